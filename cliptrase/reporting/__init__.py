"""Records made readable: tables, published rows, Markdown/CSV files, charts, the HTML report and the
qualitative grid."""
