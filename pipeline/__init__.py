"""Turn a Hugging Face checkpoint into verified CPU inference artifacts.

The public entry points are :func:`pipeline.recipe.load` and :func:`pipeline.build.build`;
the ``convert`` command line is a thin layer over them.
"""

__version__ = "0.1.0"
