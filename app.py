"""recontext studio: `python app.py [--preset tiny|tiny-flux|sd15|sdxl|sdxl-turbo|flux|auto] [--port N] [--mcp]`.
`RECONTEXT_APP=review` serves the Review tab only (public rating campaigns: no generation
endpoint, no model loaded)."""

import argparse
import logging
import os
import sys

from gradio import utils as gr_utils

from recontext import Studio
from recontext.data import check_secret, open_data
from recontext.logs import quiet_libraries
from recontext.review.raters import raters_mode
from recontext.ui import build_demo, build_review_demo, css, theme
from recontext.ui.review_tab import review_mode

APPS = ("studio", "review")


def app_kind() -> str:
    """`$RECONTEXT_APP`: studio (default: every tab) or review (the Review tab only)."""
    kind = os.environ.get("RECONTEXT_APP", "").strip().lower() or "studio"
    if kind not in APPS:
        raise ValueError(f"RECONTEXT_APP must be one of {', '.join(APPS)}, got {kind!r}")
    return kind

MAX_FILE_SIZE = "20mb"  # per upload; $RECONTEXT_MAX_FILE_SIZE overrides (e.g. "50mb", "5gb", bytes)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default=None,
                        help="model preset (default: $RECONTEXT_PRESET, else auto: sdxl on CUDA, tiny on CPU)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true")
    parser.add_argument("--mcp", action="store_true", default=os.environ.get("RECONTEXT_MCP") == "1",
                        help="also serve an MCP server (tools: reconstruct, edit, dress, summary) "
                             "at /gradio_api/mcp/ (default: off, or $RECONTEXT_MCP=1)")
    return parser.parse_args(argv)


def max_file_size() -> str | int:
    """The largest upload the server accepts (Gradio refuses a bigger one before it is
    written to disk): `$RECONTEXT_MAX_FILE_SIZE`, default 20 MB."""
    value = os.environ.get("RECONTEXT_MAX_FILE_SIZE", "").strip() or MAX_FILE_SIZE
    return int(value) if value.isdigit() else value


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    data = open_data()
    try:
        check_secret(data.root)  # a short secret would make the blind order guessable: refuse now
        gr_utils._parse_file_size(max_file_size())
        review_mode()
        raters_mode()
        kind = app_kind()
    except ValueError as e:
        sys.exit(f"error: {e}")
    if kind == "review":
        demo, page_css = build_review_demo(data), css(None)
    else:
        studio = Studio(args.preset)
        demo, page_css = build_demo(studio, data), css(studio)
    demo.queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, share=args.share, mcp_server=args.mcp,
        theme=theme(), css=page_css, max_file_size=max_file_size())


if __name__ == "__main__":
    main()
