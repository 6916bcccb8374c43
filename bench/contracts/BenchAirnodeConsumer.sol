// SPDX-License-Identifier: MIT
// An Airnode RRP requester for the gas comparison (bench/peers.py). `request`/`fulfill` follow
// API3's documented requester (the request id is recorded and checked in the callback);
// `requestMinimal`/`fulfillMinimal` only check the caller. Both store the bytes32 answer in one
// new slot.
pragma solidity 0.8.9;

import "airnode/contracts/rrp/requesters/RrpRequesterV0.sol";

contract BenchAirnodeConsumer is RrpRequesterV0 {
  mapping(bytes32 => bool) public incomingFulfillments;
  mapping(bytes32 => bytes32) public results;

  constructor(address airnodeRrp) RrpRequesterV0(airnodeRrp) {}

  /// @notice A full request with `parameters`, recording its id.
  function request(address airnode, bytes32 endpointId, address sponsorWallet, bytes calldata parameters)
    external
    returns (bytes32 requestId)
  {
    requestId = airnodeRrp.makeFullRequest(
      airnode, endpointId, address(this), sponsorWallet, address(this), this.fulfill.selector, parameters
    );
    incomingFulfillments[requestId] = true;
  }

  /// @notice The callback for `request`: checks and clears the id, stores the answer.
  function fulfill(bytes32 requestId, bytes calldata data) external onlyAirnodeRrp {
    require(incomingFulfillments[requestId], "No such request made");
    delete incomingFulfillments[requestId];
    results[requestId] = abi.decode(data, (bytes32));
  }

  /// @notice A full request with `parameters`, nothing recorded.
  function requestMinimal(address airnode, bytes32 endpointId, address sponsorWallet, bytes calldata parameters)
    external
    returns (bytes32)
  {
    return airnodeRrp.makeFullRequest(
      airnode, endpointId, address(this), sponsorWallet, address(this), this.fulfillMinimal.selector, parameters
    );
  }

  /// @notice The callback for `requestMinimal`: stores the answer.
  function fulfillMinimal(bytes32 requestId, bytes calldata data) external onlyAirnodeRrp {
    results[requestId] = abi.decode(data, (bytes32));
  }
}
