"""HLS playlists and DASH MPDs rewritten to audio only: pure functions, text in, text out.

`hls.rewrite` and `dash.rewrite` give the new text (or None: pass the origin's through), and warnings;
`common` holds the URL contract of the segment URIs they write (what our server must honour).
"""
