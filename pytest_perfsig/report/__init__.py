"""Outputs people and machines read: terminal table, JUnit properties, HTML, JSON."""
