"""thinker: a looped transformer that thinks through latent memory, with sweeps and benchmarks."""

__version__ = "0.1.0"
