"""Compiler passes over the IR, installed as ``s2sgrad.transforms``: each is a pure function IR -> IR."""
