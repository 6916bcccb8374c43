"""ce-bridge: runs compute jobs paid for on Ethereum on Charity Engine's grid and writes results back."""

__version__ = "0.1.0"
