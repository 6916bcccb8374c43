// SPDX-License-Identifier: MIT
// A ChainlinkClient consumer for the gas comparison (bench/peers.py): it sends an operator request
// whose CBOR buffer is the benchmark's payload and stores the bytes32 answer in one new slot.
pragma solidity 0.8.19;

import {Chainlink} from "chainlink/src/v0.8/operatorforwarder/Chainlink.sol";
import {ChainlinkClient} from "chainlink/src/v0.8/operatorforwarder/ChainlinkClient.sol";

contract BenchChainlinkConsumer is ChainlinkClient {
  using Chainlink for Chainlink.Request;

  mapping(bytes32 requestId => bytes32 value) public results;

  constructor(address link, address operator) {
    _setChainlinkToken(link);
    _setChainlinkOracle(operator);
  }

  /// @notice Sends `payload` as the request's buffer to the operator, paying `payment` LINK.
  function request(bytes32 specId, bytes calldata payload, uint256 payment) external returns (bytes32) {
    Chainlink.Request memory req = _buildOperatorRequest(specId, this.fulfill.selector);
    req._setBuffer(payload);
    return _sendOperatorRequest(req, payment);
  }

  /// @notice The operator's callback: stores the answer.
  function fulfill(bytes32 requestId, bytes32 value) external recordChainlinkFulfillment(requestId) {
    results[requestId] = value;
  }
}
