"""The lab: reproduce 4-tuple collisions on this machine's Linux kernel in network namespaces
(clients -> nftables NAT -> DNAT "nodes" keeping the client address -> backends) and compare the
measured count with the model's prediction. Needs root. See docs/lab.md."""
from .run import LabInterrupted, LabPermissionError, run_lab
from .topology import LabConfigError, LabError, LabUnavailable

__all__ = ["run_lab", "LabError", "LabConfigError", "LabPermissionError", "LabInterrupted",
           "LabUnavailable"]
