"""msfeas: recruitment feasibility of MS trials on registry exports."""

__version__ = "0.1.0"
