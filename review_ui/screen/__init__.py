"""The review screen's parts (filters, gallery, inspector with loupe, analyse tab), their wiring, and their pure helpers."""
