"""recontext studio: `python app.py [--preset tiny|tiny-flux|sd15|sdxl|sdxl-turbo|flux|auto] [--port N] [--mcp]`."""

import argparse
import logging
import os

from recontext import Studio
from recontext.logs import quiet_libraries
from recontext.ui import build_demo, css, theme


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


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    studio = Studio(args.preset)
    demo = build_demo(studio)
    demo.queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, share=args.share, mcp_server=args.mcp,
        theme=theme(), css=css(studio))


if __name__ == "__main__":
    main()
