"""mpi_landscape: loss landscapes of neural networks, computed over MPI ranks.

Loss and accuracy of a trained network over a line or a grid of points
θ* + α·δ + β·η in weight space (Li et al., "Visualizing the loss landscape of
neural nets", ICLR 2018), with filter-normalized random directions,
interpolation between models and PCA directions of optimizer trajectories.
"""

__version__ = "0.1.0"

__all__ = ["compute_surface", "__version__"]


def __getattr__(name: str):
    """``compute_surface`` on first use, so that importing the package does not load torch."""
    if name == "compute_surface":
        from .api import compute_surface

        return compute_surface
    raise AttributeError(name)
