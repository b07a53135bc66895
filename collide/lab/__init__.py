"""The lab: reproduce 4-tuple collisions on this machine's Linux kernel in network namespaces
(clients -> nftables NAT -> DNAT "nodes" keeping the client address -> backends) and compare the
measured count with the model's prediction. Needs root. See docs/lab.md."""
from .run import LabInterrupted, LabPermissionError, LabUnavailable, poisson_interval, run_lab
from .topology import LabConfigError, LabError

__all__ = ["run_lab", "poisson_interval", "LabError", "LabConfigError", "LabPermissionError",
           "LabInterrupted", "LabUnavailable"]
