"""Helpers shared by the tests and the benchmarks (synthetic traffic, veth pairs, small models).

pytest puts ``tests/`` on ``sys.path`` (the rootdir conftest lives there and ``tests/`` is not a
package), so tests import ``support.<module>``; the benchmarks add ``tests/`` themselves.
"""
