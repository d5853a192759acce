"""recontext: diffusion-based image recontextualization — inversion, editing, garments."""

__version__ = "0.1.0"


def __getattr__(name):  # keep `import recontext.review` free of torch
    if name == "Studio":
        from .studio import Studio

        return Studio
    raise AttributeError(name)


__all__ = ["Studio", "__version__"]
