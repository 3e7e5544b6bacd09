"""Deployments: where a workspace lives. ``base.Deployment`` is the interface, one module per
backend implements it (``docker``: a hardened container; ``local``: a host folder, for tests and
notebooks only)."""

from sandbox.deployments.base import Deployment
from sandbox.deployments.docker import DockerDeployment, DockerDeploymentConfig
from sandbox.deployments.local import LocalDeployment, LocalDeploymentConfig

__all__ = ["Deployment", "DockerDeployment", "DockerDeploymentConfig", "LocalDeployment", "LocalDeploymentConfig"]
