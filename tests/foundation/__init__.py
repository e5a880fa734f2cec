"""Foundation tests (a package, so module names like test_cli do not clash with other areas)."""
