"""Integrations with libraries that build their own redis-py pools (docs/integrations.md).

Each submodule imports its library, which fairpool does not depend on: install the library
yourself (``pip install fairpool celery``).
"""
