"""Present a notebook's demos as a web app: Voila shows its outputs and widgets, no code.

    labkit present                                  # notebook 06's demos at http://127.0.0.1:8866/
    labkit present 06 -p seed 3 --port 8900         # another first customer, another port
    python -m labkit.present notebooks/06_interactive_demos.ipynb

Voila runs the series' own notebook file (no copy) in a fresh kernel for each visitor and serves
the page on this machine only (127.0.0.1). Parameters reach the notebook's `parameters` cell the
way papermill's do: `-p KEY VALUE` on the command line, or the page address's query string
(`http://127.0.0.1:8866/?seed=3&coin_level=4`); names the notebook does not declare are refused
on the command line and ignored in the address. When the main job has trained notebook 05's desk
agent (`runs/series/05-customer_service`), the demos of notebook 06 are driven by it; otherwise
the notebook trains its quick agent when the page opens (a few seconds).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit.series import (
    NOTEBOOK_DIR,
    add_parameter_option,
    declared_parameters,
    list_notebooks,
    literal_value,
)

HOST = "127.0.0.1"  # never another interface: the demos run code on this machine
DEFAULT_NOTEBOOK = "06"
SERIES_DESK_AGENT = Path("runs/series/05-customer_service")  # what `make series` leaves
TEMPLATE_DIR = Path(__file__).parent / "templates" / "present"  # the page: Voila's, offline


def find_notebook(name: str) -> Path:
    """A notebook file, or the series notebook whose file name starts with `name` ("06").

    Raises:
        FileNotFoundError: neither a file nor the prefix of a notebook of the series.
    """
    path = Path(name)
    if path.suffix == ".ipynb":
        if not path.is_file():
            raise FileNotFoundError(f"no notebook {path}")
        return path.resolve()
    return list_notebooks(NOTEBOOK_DIR, only=[name])[0]


def query_parameters(arguments: dict[str, list[bytes]], declared: set[str]) -> dict[str, Any]:
    """The page address's `?key=value` pairs that the notebook declares, as literals."""
    return {
        key: literal_value(values[-1].decode("utf-8"))
        for key, values in arguments.items()
        if key in declared and values
    }


def inject(notebook: Any, parameters: dict[str, Any]) -> Any:
    """A copy of `notebook` with a cell assigning `parameters` after its `parameters` cell, as
    papermill's injected cell does (at the top when the notebook has no such cell)."""
    import copy

    import nbformat

    notebook = copy.deepcopy(notebook)
    source = "# Parameters (labkit present)\n" + "".join(
        f"{key} = {value!r}\n" for key, value in parameters.items()
    )
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    tagged = [
        i
        for i, c in enumerate(notebook.cells)
        if "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    notebook.cells.insert(tagged[0] + 1 if tagged else 0, cell)
    return notebook


def parameter_hook(path: Path, parameters: dict[str, Any]) -> Callable[..., Any]:
    """Voila's prelaunch hook: inject `parameters`, then the address's own, into the notebook."""
    declared = declared_parameters(path)

    def hook(request_handler: Any, notebook: Any, cwd: str) -> Any:
        arguments = getattr(getattr(request_handler, "request", None), "query_arguments", {})
        chosen = {**parameters, **query_parameters(arguments, declared)}
        return inject(notebook, chosen) if chosen else notebook

    return hook


def default_parameters(path: Path, root: Path) -> dict[str, Any]:
    """Notebook 06 takes the main job's desk agent when there is one; nothing otherwise."""
    agent = root / SERIES_DESK_AGENT
    if "agent_run" in declared_parameters(path) and (agent / "config.json").is_file():
        return {"agent_run": str(agent.resolve())}
    return {}


def make_app(path: Path, parameters: dict[str, Any], port: int) -> Any:
    """A Voila application serving `path` on HOST:port, `parameters` injected on each visit."""
    from voila.app import Voila

    app = Voila()
    app.initialize(
        [
            str(path),
            f"--port={port}",
            "--no-browser",
            f"--Voila.ip={HOST}",
            "--Voila.port_retries=0",
        ]
    )
    app.voila_configuration.prelaunch_hook = parameter_hook(path, parameters)
    app.template_paths = [str(TEMPLATE_DIR), *app.template_paths]  # found first: our index.html.j2
    return app


def main(argv: list[str] | None = None) -> int:
    """Serve the demos until Ctrl-C.

    Returns:
        The exit code: 0 stopped by Ctrl-C, 2 a bad command line.
    """
    parser = argparse.ArgumentParser(
        prog="labkit present", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    parser.add_argument(
        "notebook",
        nargs="?",
        default=DEFAULT_NOTEBOOK,
        help="a notebook file or the number of one in notebooks/ (default 06, the demos)",
    )
    parser.add_argument("--port", type=int, default=8866, help="port on 127.0.0.1 (default 8866)")
    add_parameter_option(
        parser, "a value for the notebook's parameters cell (papermill -p), e.g. -p seed 3"
    )
    args = parser.parse_args(argv)
    try:
        path = find_notebook(args.notebook)
    except FileNotFoundError as e:
        print(f"labkit present: {e}", file=sys.stderr)
        return 2
    declared = declared_parameters(path)
    given = {key: literal_value(value) for key, value in args.p}
    unknown = sorted(set(given) - declared)
    if unknown:
        print(
            f"labkit present: {path.name} does not declare {', '.join(unknown)}; it declares "
            f"{', '.join(sorted(declared)) or 'no parameters'}.",
            file=sys.stderr,
        )
        return 2
    parameters = {**default_parameters(path, Path.cwd()), **given}
    app = make_app(path, parameters, args.port)
    address = f"http://{HOST}:{args.port}/"
    shown = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
    print(f"labkit present: {path.name} at {address}" + (f" ({shown})" if shown else ""))
    print("  parameters in the address too, e.g. " + address + "?seed=3; Ctrl-C stops", flush=True)
    app.start()  # blocks; Voila stops its kernels when the loop ends
    return 0


if __name__ == "__main__":
    sys.exit(main())
