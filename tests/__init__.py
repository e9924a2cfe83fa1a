"""The test suite: a package, so that test modules import shared code as ``tests.helpers``."""
