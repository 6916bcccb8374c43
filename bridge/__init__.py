"""ce-bridge: runs compute jobs paid for on Ethereum on Charity Engine's grid, results on-chain."""

import os

__version__ = "0.1.0"

# eth-hash chooses its keccak backend at the first hash, pycryptodome first when both are
# installed. pysha3 (C, a pinned dependency) hashes a checksum address in ~0.8 of the time,
# and the bridge hashes one for many logs, keys and transactions; an explicit
# ETH_HASH_BACKEND still wins.
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
