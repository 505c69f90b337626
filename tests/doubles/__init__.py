"""Test doubles shared by the test suites (scripted servers, stand-in executables)."""
