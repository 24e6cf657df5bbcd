"""Click commands of the `pixelperfect` CLI; each calls one library function."""
