"""Conformance of smtptop with the expected outputs of Zeek, Suricata, Arkime and nDPI."""
