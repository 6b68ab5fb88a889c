"""imagejobs: a self-hostable, wire-compatible Huawei Cloud WorkspaceApp image-job service."""

__version__ = "0.1.0"
