"""The strongroom server (install with ``pip install 'strongroom[server]'``)."""
