# marathon-python 0.13 serializes nested objects through `collections.Iterable`, which
# Python 3.10 removed (compat-surface.md, section e). The documented workaround.
import collections
import collections.abc

collections.Iterable = collections.abc.Iterable
