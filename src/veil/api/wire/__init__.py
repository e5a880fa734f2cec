"""Wire shapes: Custom Vision's camelCase JSON and Veil's `/veil/v1` bodies, one module per resource.

Bodies the SDK sends are `*In`, answers `*Out`; database rows and service values never leave the API directly:
each module's `*_out` functions convert them explicitly. camelCase exists only in this package.
"""
