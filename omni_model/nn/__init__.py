"""Building blocks of the Omni potential: each module does one job (see docs/model.md)."""
