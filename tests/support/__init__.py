"""Helpers shared by the tests and the benchmarks: synthetic traffic and throwaway veth pairs.

pytest puts ``tests/`` on ``sys.path`` (the rootdir conftest lives there and ``tests/`` is not a
package), so tests import ``support.traffic``; the benchmarks add ``tests/`` themselves.
"""
