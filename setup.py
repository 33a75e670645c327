"""The one packaging fact pyproject.toml cannot state: the scenario fixtures, kept in
scenarios/ at the repository root (where they are written and reviewed), install inside
the mocks package as `mocks.fixtures`, so `interchange mock` finds them in an installed
copy too (mocks/scenarios.py DEFAULT_ROOT). Everything else is in pyproject.toml."""
from setuptools import find_namespace_packages, setup

setup(packages=[*find_namespace_packages(include=["app", "app.*", "mocks", "mocks.*"]), "mocks.fixtures"],
      package_dir={"mocks.fixtures": "scenarios"})
