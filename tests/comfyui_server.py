"""Start a real ComfyUI server with this pack and tiny fixture models, and talk to it over HTTP.

Used by the opt-in ``tests/test_comfyui_server.py`` (marker ``comfyui``); reusable on its own::

    with ComfyServer.start(Path(os.environ["COMFYUI_DIR"]), tmp_path) as server:
        assert "C3MoTVAEDecode" in server.object_info()
        prompt_id = server.queue(api_prompt)
        entry = server.wait(prompt_id)

Layout under the work dir (nothing is written into the ComfyUI checkout):

* ``base/`` — ``--base-directory`` (so the checkout's own models/custom_nodes/user are not used);
* ``extra_nodes/<PACK_FOLDER>`` — a symlink to this repository, mounted as a custom-node folder through
  ``extra_model_paths.yaml`` (like ComfyUI's own execution tests);
* ``models/`` — tiny fixtures (:mod:`tiny_models`), mounted through the same yaml for every model key;
* ``input/``, ``output/``, ``temp/`` — ``--input-directory`` / ``--output-directory`` / ``--temp-directory``;
* ``server.log`` — everything the server prints; ``comfyui.db`` — its database.

The server runs in its own process group, which :meth:`ComfyServer.stop` terminates (then kills) — it
never touches any other process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import REPO_ROOT

PACK_FOLDER = "cosmos3-mot"  # folder name of the symlinked pack inside the custom-node dir
MODEL_KEYS = ("checkpoints", "vae", "diffusion_models", "text_encoders", "diffusers", "cosmos3", "cosmos3_guardrail",
              "vae_approx", "loras")


def comfyui_python(comfy_dir: Path) -> str:
    """``COMFYUI_PYTHON``, else ``<COMFYUI_DIR>/../comfyui-venv/bin/python`` when it exists, else ``python``."""
    explicit = os.environ.get("COMFYUI_PYTHON")
    if explicit:
        return explicit
    venv = Path(comfy_dir).parent / "comfyui-venv" / "bin" / "python"
    return str(venv) if venv.exists() else "python"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Workspace:
    root: Path
    base: Path
    nodes_dir: Path
    models: Path
    input: Path
    output: Path
    temp: Path
    yaml: Path
    log: Path


def prepare_workspace(root: Path) -> Workspace:
    """Create the directory layout and the extra-model-paths yaml (see the module docstring)."""
    root = Path(root)
    ws = Workspace(root, root / "base", root / "extra_nodes", root / "models", root / "input", root / "output",
                   root / "temp", root / "extra_model_paths.yaml", root / "server.log")
    for d in (ws.base / "custom_nodes", ws.base / "user", ws.nodes_dir, ws.models, ws.input, ws.output, ws.temp):
        d.mkdir(parents=True, exist_ok=True)
    link = ws.nodes_dir / PACK_FOLDER
    if not link.exists():
        link.symlink_to(REPO_ROOT, target_is_directory=True)
    for key in MODEL_KEYS:
        (ws.models / key).mkdir(exist_ok=True)
    lines = ["c3mot_test:", f"    base_path: {root}", "    custom_nodes: extra_nodes"]
    lines += [f"    {key}: models/{key}" for key in MODEL_KEYS]
    ws.yaml.write_text("\n".join(lines) + "\n")
    return ws


class ServerError(RuntimeError):
    pass


class ComfyServer:
    def __init__(self, process: subprocess.Popen, port: int, workspace: Workspace, command: list[str]):
        self.process, self.port, self.workspace, self.command = process, port, workspace, command
        self.url = f"http://127.0.0.1:{port}"
        self.client_id = str(uuid.uuid4())

    # -- lifecycle ---------------------------------------------------------------------------------------
    @classmethod
    def start(cls, comfy_dir: Path, workspace: Workspace, *, python: str | None = None, ready_timeout: float = 300.0,
              extra_args: tuple[str, ...] = ()) -> ComfyServer:
        comfy_dir = Path(comfy_dir)
        port = free_port()
        command = [
            python or comfyui_python(comfy_dir), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
            "--disable-auto-launch", "--base-directory", str(workspace.base),
            "--extra-model-paths-config", str(workspace.yaml),
            "--output-directory", str(workspace.output), "--input-directory", str(workspace.input),
            "--temp-directory", str(workspace.temp),
            "--database-url", f"sqlite:///{workspace.root / 'comfyui.db'}",
            "--disable-api-nodes", *extra_args,
        ]
        log = open(workspace.log, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        process = subprocess.Popen(command, cwd=comfy_dir, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        log.close()
        server = cls(process, port, workspace, command)
        try:
            server.wait_ready(ready_timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"ComfyUI exited with code {self.process.returncode} during start-up:\n{self.log_tail()}"
                )
            try:
                self.get_json("/system_stats", timeout=5)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(1.0)
        raise ServerError(f"ComfyUI did not answer on {self.url} within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """Terminate the server's own process group, then kill it if it does not exit."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(10)

    def __enter__(self) -> ComfyServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- HTTP ----------------------------------------------------------------------------------------------
    def _request(self, path: str, data: bytes | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=data,
                                     headers={"Content-Type": "application/json"} if data is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def get_json(self, path: str, timeout: float = 30.0) -> Any:
        status, body = self._request(path, timeout=timeout)
        if status != 200:
            raise ServerError(f"GET {path} -> {status}: {body[:2000]!r}")
        return json.loads(body)

    def object_info(self) -> dict:
        return self.get_json("/object_info", timeout=120)

    def queue(self, prompt: dict, extra_data: dict | None = None) -> str:
        """POST /prompt; returns the prompt id, or raises with the server's validation errors."""
        body = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            body["extra_data"] = extra_data
        status, data = self._request("/prompt", json.dumps(body).encode())
        answer = json.loads(data) if data else {}
        if status != 200 or answer.get("node_errors"):
            raise ServerError(f"/prompt rejected the workflow ({status}): {json.dumps(answer, indent=1)[:4000]}")
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """Poll /history/<id> until the prompt completed (or failed); returns its history entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get_json(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry:  # a prompt enters the history when it finished (successfully or not)
                return entry
            if self.process.poll() is not None:
                raise ServerError(f"ComfyUI exited while running {prompt_id}:\n{self.log_tail()}")
            time.sleep(0.5)
        raise ServerError(f"prompt {prompt_id} did not finish within {timeout:.0f} s:\n{self.log_tail()}")

    def view(self, entry: dict) -> bytes:
        """GET /view for one output file entry ``{filename, subfolder, type}``."""
        query = urllib.parse.urlencode({k: entry.get(k, "") for k in ("filename", "subfolder", "type")})
        status, body = self._request(f"/view?{query}", timeout=60)
        if status != 200:
            raise ServerError(f"/view?{query} -> {status}")
        return body

    def log_text(self) -> str:
        return self.workspace.log.read_text(errors="replace") if self.workspace.log.exists() else ""

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_text()[-chars:]


def output_files(history_entry: dict) -> list[dict]:
    """Every file entry (``images``/``gifs``/``videos``…) listed in a history entry's outputs."""
    files = []
    for node_output in history_entry.get("outputs", {}).values():
        for value in node_output.values():
            if isinstance(value, list):
                files.extend(v for v in value if isinstance(v, dict) and "filename" in v)
    return files


def file_kind(data: bytes) -> str:
    """png / webp / mp4 / webm / jpeg / unknown, from the magic bytes."""
    if data.startswith(b"\x89PNG"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return "mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    return "unknown"
