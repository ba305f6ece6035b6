"""The host image cache (issue 15): a content-addressed store of images in a directory of each host's own.

layout: the names on disk and the sidecar record (what fan-out writers share with the cache's own code).
"""
