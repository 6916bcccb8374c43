"""Gas of a whole request life: JobEscrow against Chainlink's Operator and API3's AirnodeRrpV0.

All three run on the same Anvil (its default hardfork), each peer built from its npm package with
that package's own compiler version and settings, for a 30-byte request payload and a bytes32
answer stored by the consumer in one new slot:

- **Chainlink** (``@chainlink/contracts`` 1.5.0): ``LinkToken`` (solc 0.8.26, 1,000,000 runs,
  ``paris``, no metadata hash: the package's ``shared`` foundry profile), ``Operator`` and a
  ``ChainlinkClient`` consumer (solc 0.8.19, 1,000,000 runs, no metadata hash: its
  ``operatorforwarder`` profile). Request: ``consumer.request`` -> ``LINK.transferAndCall`` ->
  ``Operator.onTokenTransfer`` -> ``operatorRequest`` with the payload as the CBOR buffer.
  Fulfil: ``Operator.fulfillOracleRequest2`` from an authorised node account.
- **API3** (``@api3/airnode-protocol`` 0.15.0): ``AirnodeRrpV0`` and an ``RrpRequesterV0``
  consumer (solc 0.8.9 with Hardhat's defaults, optimizer off: the package's hardhat config sets
  only the version). Request: ``makeFullRequest`` through the consumer; fulfil:
  ``AirnodeRrpV0.fulfill`` from the sponsor wallet with the airnode's signature of
  ``keccak256(abi.encodePacked(requestId, data))`` as an Ethereum signed message (as the
  contract checks and Airnode signs). Two consumers: API3's documented requester pattern (the
  request id recorded and checked) and a minimal one (caller check only).
- **JobEscrow**: ``bench.gas.measure`` on the same node: ExampleConsumer submits the ~35-byte spec
  with a callback, the operator accepts and completes in ``applyUpdates`` batches of 50 (and the
  same with single calls).

Each figure is a receipt's ``gasUsed`` in the steady state (a first request/fulfilment warms the
accounts' balances and counters up and is not counted). The packages and solc-js builds are
installed by this module into ``bench/.cache/`` (``npm pack`` and ``npm install``; outside git);
none of their code is in the repository, only the two consumers in ``bench/contracts/``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import RPCEndpoint, TxReceipt

from bench import gas
from bridge.chain.artifacts import REPO_ROOT
from bridge.chain.deploy import connect
from bridge.devchain import Anvil, anvil_key

CACHE = REPO_ROOT / "bench" / ".cache"
CONTRACTS = REPO_ROOT / "bench" / "contracts"
SHIM = REPO_ROOT / "bench" / "peer_solc.js"
#: The npm packages, unpacked under ``CACHE/pkgs/<name>``.
PACKAGES = {
    "chainlink": "@chainlink/contracts@1.5.0",
    "airnode": "@api3/airnode-protocol@0.15.0",
    # Chainlink's sources import OpenZeppelin as `@openzeppelin/contracts@4.8.3/...`
    # (a pinned alias in its package.json); AirnodeRrpV0 depends on 4.4.2.
    "openzeppelin-4.8.3": "@openzeppelin/contracts@4.8.3",
    "openzeppelin-4.4.2": "@openzeppelin/contracts@4.4.2",
}
#: solc-js builds, installed under ``CACHE/solc/node_modules/<alias>``.
SOLC = {"0.8.9": "solc-0809", "0.8.19": "solc-0819", "0.8.26": "solc-0826"}
PAYLOAD = bytes(range(0x41, 0x41 + 30))  # 30 bytes: "ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^"
ANSWER = bytes(Web3.keccak(text="ce-bridge bench answer"))
ENDPOINT_ID = bytes(Web3.keccak(text="ce-bridge bench endpoint"))
SPEC_ID = bytes(Web3.keccak(text="ce-bridge bench job spec"))
LINK_PAYMENT = 10**17
NPM_TIMEOUT = 600


@dataclass(frozen=True)
class Build:
    """One solc run: a compiler version, its settings and the sources to compile."""

    solc: str
    settings: dict[str, Any]
    sources: tuple[str, ...]  # source unit names, resolved against CACHE/pkgs then CONTRACTS
    remappings: tuple[str, ...] = ()


_CHAINLINK_OZ = ("@openzeppelin/contracts@4.8.3/=openzeppelin-4.8.3/",)
BUILDS = {
    "chainlink-link": Build(
        "0.8.26",
        {
            "optimizer": {"enabled": True, "runs": 1_000_000},
            "evmVersion": "paris",
            "metadata": {"bytecodeHash": "none"},
        },
        ("chainlink/src/v0.8/shared/token/ERC677/LinkToken.sol",),
        _CHAINLINK_OZ,
    ),
    "chainlink-operator": Build(
        "0.8.19",
        {"optimizer": {"enabled": True, "runs": 1_000_000}, "metadata": {"bytecodeHash": "none"}},
        (
            "chainlink/src/v0.8/operatorforwarder/Operator.sol",
            "BenchChainlinkConsumer.sol",
        ),
        _CHAINLINK_OZ,
    ),
    "airnode": Build(
        "0.8.9",
        {"optimizer": {"enabled": False, "runs": 200}},
        ("airnode/contracts/rrp/AirnodeRrpV0.sol", "BenchAirnodeConsumer.sol"),
        ("@openzeppelin/contracts/=openzeppelin-4.4.2/",),
    ),
}


# ------------------------------------------------------------------ installing and compiling


def _npm(args: list[str], cwd: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH: it is needed to fetch the peers' packages")
    done = subprocess.run(
        [npm, *args, "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"npm {' '.join(args)} failed: {done.stderr.strip()[-500:]}")


def ensure_packages(cache: Path = CACHE) -> Path:
    """Unpacks every package of ``PACKAGES`` under ``cache/pkgs`` (``npm pack``: no install
    scripts and no dependencies, so Chainlink's unreachable GitHub dependency is not needed)."""
    pkgs = cache / "pkgs"
    tarballs = cache / "tarballs"
    tarballs.mkdir(parents=True, exist_ok=True)
    for name, spec in PACKAGES.items():
        target = pkgs / name
        if (target / "package.json").exists():
            continue
        before = set(tarballs.glob("*.tgz"))
        _npm(["pack", spec, "--pack-destination", str(tarballs)], tarballs)
        new = sorted(set(tarballs.glob("*.tgz")) - before) or sorted(
            tarballs.glob(spec.lstrip("@").replace("/", "-").split("@")[0] + "-*.tgz")
        )
        if not new:
            raise RuntimeError(f"npm pack {spec} left no tarball")
        partial = pkgs / (name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(new[-1]) as tar:
            tar.extractall(partial, filter="data")
        shutil.rmtree(target, ignore_errors=True)
        (partial / "package").rename(target)
        shutil.rmtree(partial)
    return pkgs


def ensure_solc(version: str, cache: Path = CACHE) -> Path:
    """The solc-js package of ``version`` (installed under an alias into ``cache/solc``)."""
    alias = SOLC[version]
    root = cache / "solc"
    package = root / "node_modules" / alias
    if not (package / "soljson.js").exists():
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "package.json").exists():
            (root / "package.json").write_text('{"private": true}\n')
        _npm(["install", f"{alias}@npm:solc@{version}"], root)
    return package


def compile_build(build: Build, cache: Path = CACHE) -> dict[str, dict[str, Any]]:
    """Compiles ``build``; returns contract name -> ``{"abi", "bytecode"}`` (cached by input)."""
    pkgs = ensure_packages(cache)
    sources: dict[str, dict[str, str]] = {}
    for name in build.sources:
        path = pkgs / name if (pkgs / name).exists() else CONTRACTS / name
        sources[name] = {"content": path.read_text()}
    standard = {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            **build.settings,
            "remappings": list(build.remappings),
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    text = json.dumps(standard, sort_keys=True)
    key = hashlib.sha256(f"{build.solc}\n{text}".encode()).hexdigest()[:16]
    cached = cache / "artifacts" / f"{key}.json"
    if cached.exists():
        result: dict[str, dict[str, Any]] = json.loads(cached.read_text())
        return result
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH: it runs solc-js")
    done = subprocess.run(
        [node, str(SHIM), str(ensure_solc(build.solc, cache)), str(pkgs), str(CONTRACTS)],
        input=text,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"solc {build.solc} failed: {done.stderr.strip()[-1000:]}")
    output = json.loads(done.stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        messages = "; ".join(e["formattedMessage"] for e in errors)
        raise RuntimeError(f"solc {build.solc}: {messages}")
    result = {
        name: {"abi": c["abi"], "bytecode": "0x" + c["evm"]["bytecode"]["object"]}
        for unit in output["contracts"].values()
        for name, c in unit.items()
    }
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result))
    return result


# ------------------------------------------------------------------ measuring


def _deploy(w3: Web3, artifact: dict[str, Any], sender: ChecksumAddress, *args: Any) -> Contract:
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor(*args).transact({"from": sender})
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=120)
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise RuntimeError("a peer contract failed to deploy")
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


def _send(w3: Web3, fn: Any, sender: ChecksumAddress) -> TxReceipt:
    receipt: TxReceipt = w3.eth.wait_for_transaction_receipt(
        fn.transact({"from": sender}), timeout=120
    )
    if receipt["status"] != 1:
        raise RuntimeError(f"peer transaction reverted: {receipt['transactionHash'].hex()}")
    return receipt


@dataclass
class PeerFigures:
    """Gas of one system's request and fulfilment (steady state)."""

    request: int
    fulfill: int
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Request + fulfilment."""
        return self.request + self.fulfill


def measure_chainlink(w3: Web3, accounts: list[ChecksumAddress]) -> PeerFigures:
    """Chainlink Operator: a request through LINK ``transferAndCall``, ``fulfillOracleRequest2``.

    ``accounts``: [owner, node].
    """
    owner, node = accounts
    link_art = compile_build(BUILDS["chainlink-link"])["LinkToken"]
    built = compile_build(BUILDS["chainlink-operator"])
    link = _deploy(w3, link_art, owner)
    operator = _deploy(w3, built["Operator"], owner, link.address, owner)
    consumer = _deploy(w3, built["BenchChainlinkConsumer"], owner, link.address, operator.address)
    _send(w3, operator.functions.setAuthorizedSenders([node]), owner)
    _send(w3, link.functions.grantMintRole(owner), owner)
    _send(w3, link.functions.mint(consumer.address, 100 * 10**18), owner)
    figures = PeerFigures(0, 0)
    for _ in range(2):  # the first warms the operator's LINK balance up
        receipt = _send(w3, consumer.functions.request(SPEC_ID, PAYLOAD, LINK_PAYMENT), owner)
        (event,) = operator.events.OracleRequest().process_receipt(receipt, errors=DISCARD)
        args = event["args"]
        if bytes(args["data"]) != PAYLOAD:
            raise RuntimeError("the Chainlink request does not carry the payload")
        request_id = bytes(args["requestId"])
        fulfil = operator.functions.fulfillOracleRequest2(
            request_id,
            args["payment"],
            args["callbackAddr"],
            args["callbackFunctionId"],
            args["cancelExpiration"],
            request_id + ANSWER,
        )
        done = _send(w3, fulfil, node)
        if bytes(consumer.functions.results(request_id).call()) != ANSWER:
            raise RuntimeError("the Chainlink consumer did not store the answer")
        figures = PeerFigures(int(receipt["gasUsed"]), int(done["gasUsed"]))
    figures.notes.append(
        "LinkToken is the package's BurnMintERC677 (0.8.26), not mainnet's 0.4.16 LINK"
    )
    return figures


def _airnode_signature(request_id: bytes, data: bytes, airnode_key: str) -> bytes:
    """What Airnode signs: keccak256(abi.encodePacked(requestId, data)) as an EIP-191 message."""
    digest = Web3.keccak(request_id + data)
    signed = Account.sign_message(encode_defunct(primitive=digest), private_key=airnode_key)
    return bytes(signed.signature)


def measure_airnode(
    w3: Web3, accounts: list[ChecksumAddress], airnode_key: str, minimal: bool = False
) -> PeerFigures:
    """API3 AirnodeRrpV0: ``makeFullRequest`` through the consumer + ``fulfill``.

    ``accounts``: [deployer/requesting user, sponsor wallet]; ``minimal`` uses the consumer's
    caller-check-only callback.
    """
    user, sponsor_wallet = accounts
    airnode = Web3.to_checksum_address(Account.from_key(airnode_key).address)
    built = compile_build(BUILDS["airnode"])
    rrp = _deploy(w3, built["AirnodeRrpV0"], user)
    consumer = _deploy(w3, built["BenchAirnodeConsumer"], user, rrp.address)
    make = consumer.functions.requestMinimal if minimal else consumer.functions.request
    callback = consumer.functions.fulfillMinimal if minimal else consumer.functions.fulfill
    selector = bytes(Web3.keccak(text=callback.abi_element_identifier)[:4])
    data = ANSWER  # abi.encode(bytes32)
    figures = PeerFigures(0, 0)
    for _ in range(2):
        receipt = _send(w3, make(airnode, ENDPOINT_ID, sponsor_wallet, PAYLOAD), user)
        (event,) = rrp.events.MadeFullRequest().process_receipt(receipt, errors=DISCARD)
        request_id = bytes(event["args"]["requestId"])
        if bytes(event["args"]["parameters"]) != PAYLOAD:
            raise RuntimeError("the Airnode request does not carry the payload")
        signature = _airnode_signature(request_id, data, airnode_key)
        fulfil = rrp.functions.fulfill(
            request_id, airnode, consumer.address, selector, data, signature
        )
        done = _send(w3, fulfil, sponsor_wallet)
        if bytes(consumer.functions.results(request_id).call()) != ANSWER:
            raise RuntimeError("the Airnode consumer did not store the answer")
        figures = PeerFigures(int(receipt["gasUsed"]), int(done["gasUsed"]))
    return figures


def peers(cache: Path = CACHE) -> dict[str, Any]:
    """Compiles the peers (installing them into ``cache`` first), starts an Anvil and measures
    Chainlink, API3 (both consumers) and JobEscrow on it.

    Returns:
        ``{"rows": [...], "compilers": {...}, "hardfork": ...}``, each row a system with its
        request, fulfilment and total gas.
    """
    for build in BUILDS.values():
        compile_build(build, cache)
    keys = [anvil_key(i) for i in range(10)]
    addresses = [Web3.to_checksum_address(Account.from_key(k).address) for k in keys]
    with Anvil() as node:
        w3 = connect(node.url, keys)
        chainlink = measure_chainlink(w3, [addresses[5], addresses[8]])
        api3 = measure_airnode(w3, [addresses[5], addresses[7]], keys[6])
        api3_min = measure_airnode(w3, [addresses[5], addresses[7]], keys[6], minimal=True)
        ours = gas.measure(w3, gas.Roles.anvil_defaults()).figures
        info = w3.provider.make_request(RPCEndpoint("anvil_nodeInfo"), [])
        hardfork = str(info["result"]["hardFork"])
    submit = ours["consumer.submit.smallSpec"]
    batched = ours["life.consumerCallback.batch50.smallSpec"]
    rows = [
        {
            "system": "JobEscrow, batches of 50 (ExampleConsumer submit + accept + complete "
            "with callback), ~35-byte spec",
            "request": submit,
            "fulfill": batched - submit,
            "total": batched,
        },
        {
            "system": "JobEscrow, batches of 50, no accept write",
            "request": submit,
            "fulfill": ours["applyUpdates.completeCallbackFromSubmitted.batch50"],
            "total": ours["life.consumerCallback.noAccept.batch50.smallSpec"],
        },
        {
            "system": "JobEscrow, single calls (acceptJob + completeJob with callback)",
            "request": submit,
            "fulfill": ours["acceptJob"] + ours["completeJob.callback"],
            "total": submit + ours["acceptJob"] + ours["completeJob.callback"],
        },
        {
            "system": "JobEscrow, batches of 50, typical spec (804 bytes of calldata)",
            "request": ours["consumer.submit"],
            "fulfill": ours["life.consumerCallback.batch50"] - ours["consumer.submit"],
            "total": ours["life.consumerCallback.batch50"],
        },
        {
            "system": "Chainlink Operator (transferAndCall + fulfillOracleRequest2)",
            "request": chainlink.request,
            "fulfill": chainlink.fulfill,
            "total": chainlink.total,
        },
        {
            "system": "API3 AirnodeRrpV0, documented requester (makeFullRequest + fulfill)",
            "request": api3.request,
            "fulfill": api3.fulfill,
            "total": api3.total,
        },
        {
            "system": "API3 AirnodeRrpV0, minimal requester",
            "request": api3_min.request,
            "fulfill": api3_min.fulfill,
            "total": api3_min.total,
        },
    ]
    return {
        "rows": rows,
        "payload_bytes": len(PAYLOAD),
        "hardfork": hardfork,
        "compilers": {name: {"solc": b.solc, **b.settings} for name, b in BUILDS.items()},
        "packages": PACKAGES,
        "notes": chainlink.notes,
    }
