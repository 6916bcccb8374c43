"""ce-bridge: runs compute jobs paid for on Ethereum on Charity Engine's grid, results on-chain."""

__version__ = "0.1.0"
