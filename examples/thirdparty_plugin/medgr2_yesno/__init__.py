"""medgr2-yesno: an example third-party medgr2 plugin (a yes/no question generator)."""

__version__ = "0.2.0"
