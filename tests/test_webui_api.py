"""The /jtp/v1 API through FastAPI's test client, with the WebUI stand-in loading the real script."""

import base64
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from jtp_core import KNOWN_MODELS, TagOptions, tag_result

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from webui_standin import WebUI  # noqa: E402


def png_b64(seed: int, size=(48, 40), mode="RGB") -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(), mode).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def webui(tmp_path, linear_checkpoint):
    standin = WebUI(tmp_path / "webui", cmd_opts={"api": True})
    shutil.copytree(linear_checkpoint, standin.models_path / "jtp" / "TINY_PILOT")
    standin.opts.data.update(jtp_default_model="TINY_PILOT", jtp_download=False)
    standin.install()
    try:
        yield standin, standin.load_script()
    finally:
        standin.uninstall()


def start(standin, demo="ui"):
    app = fastapi.FastAPI()
    for callback in standin.callbacks["app_started"]:
        callback(None if demo is None else object(), app)
    return app


@pytest.fixture
def client(webui):
    standin, script = webui
    return TestClient(start(standin)), script


def expected(tiny_tagger, b64: str, options: TagOptions | None = None):
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    return tag_result(tiny_tagger.predict_pils([image])[0], tiny_tagger.tags, options)


def test_models_lists_known_and_local_models(client):
    http, _ = client
    body = http.get("/jtp/v1/models").json()
    names = {item["name"]: item["downloaded"] for item in body["models"]}
    assert names == {**dict.fromkeys(KNOWN_MODELS, False), "TINY_PILOT": True}
    assert body["default"] == "TINY_PILOT" and body["loaded"] is None
    assert body["models_dir"].endswith("models/jtp")  # the WebUI's models/jtp, from modules.paths_internal


def test_tag_one_image_matches_the_core(client, tiny_tagger):
    http, _ = client
    image = png_b64(1)
    response = http.post("/jtp/v1/tag", json={"image": image})
    assert response.status_code == 200, response.text
    body = response.json()
    want = expected(tiny_tagger, image)
    assert body["model"] == "TINY_PILOT"
    assert body["results"] == [{"tags": want.text, "scores": want.scores}]
    assert want.text  # the tiny model puts some tags above 0.2


def test_tag_several_images_data_urls_and_options(client, tiny_tagger):
    http, _ = client
    images = [png_b64(seed) for seed in range(3)]
    options = {"threshold": 0.0, "max_tags": 3, "weighted": True, "trigger_words": "me", "order": "alphabetical"}
    body = http.post("/jtp/v1/tag", json={"images": [f"data:image/png;base64,{item}" for item in images],
                                          **options}).json()
    assert len(body["results"]) == 3
    core_options = TagOptions(threshold=0.0, max_tags=3, weighted=True, trigger_words=("me",), order="alphabetical")
    for image, result in zip(images, body["results"], strict=True):
        want = expected(tiny_tagger, image, core_options)
        assert result["tags"] == want.text
        words = result["tags"].split(", ")
        assert words[0] == "me" and len(words) == 4 and all(word.endswith(")") for word in words[1:])


def test_settings_give_the_default_options(webui, tiny_tagger):
    standin, _ = webui
    standin.opts.data.update(jtp_threshold=0.0, jtp_max_tags=2, jtp_replace_underscores=False)
    http = TestClient(start(standin))
    image = png_b64(5)
    body = http.post("/jtp/v1/tag", json={"image": image}).json()
    want = expected(tiny_tagger, image, TagOptions(threshold=0.0, max_tags=2, replace_underscores=False))
    assert body["results"][0]["tags"] == want.text and len(want.scores) == 2


def test_unload_frees_the_model(client):
    http, script = client
    http.post("/jtp/v1/tag", json={"image": png_b64(2)})
    assert http.get("/jtp/v1/models").json()["loaded"] == {"model": "TINY_PILOT", "device": "cpu",
                                                           "precision": "auto"}
    assert http.post("/jtp/v1/unload").json() == {"unloaded": True}
    assert http.get("/jtp/v1/models").json()["loaded"] is None
    assert http.post("/jtp/v1/unload").json() == {"unloaded": False}


def test_model_runs_under_the_webui_queue_lock(webui):
    standin, script = webui
    seen = []
    real = script.service._loader

    def loader(*args, **kwargs):
        seen.append(standin.queue_lock.locked())
        return real(*args, **kwargs)

    script.service._loader = loader
    TestClient(start(standin)).post("/jtp/v1/tag", json={"image": png_b64(3)})
    assert seen == [True]  # loading (and running) waits for image generation to finish


TRUNCATED_PNG = png_b64(4)[:200]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (["not", "an", "object"], 400, "JSON object"),
        ({}, 400, "exactly one of"),
        ({"image": png_b64(1), "images": [png_b64(1)]}, 400, "exactly one of"),
        ({"images": []}, 400, "non-empty list"),
        ({"image": 42}, 400, "base64-encoded"),
        ({"image": "@@not base64@@"}, 400, "not valid base64"),
        ({"image": base64.b64encode(b"hello, not an image").decode()}, 400, "not a readable image"),
        ({"image": TRUNCATED_PNG}, 400, "not a readable image"),
        ({"images": [png_b64(1), "data:text/plain,hello"]}, 400, "images[1]"),
        ({"image": png_b64(1), "model": "NO_SUCH_MODEL"}, 404, "unknown model"),
        ({"image": png_b64(1), "model": "../../etc"}, 404, "unknown model"),
        ({"image": png_b64(1), "model": "JTP_PILOT"}, 404, "not downloaded"),
        ({"image": png_b64(1), "threshold": "high"}, 400, "threshold"),
        ({"image": png_b64(1), "threshold": 1.5}, 400, "threshold"),
        ({"image": png_b64(1), "max_tags": -1}, 400, "max_tags"),
        ({"image": png_b64(1), "weighted": "yes"}, 400, "weighted"),
        ({"image": png_b64(1), "order": "random"}, 400, "order"),
        ({"image": png_b64(1), "exclude": [1, 2]}, 400, "exclude"),
        ({"image": png_b64(1), "treshold": 0.3}, 400, "unknown field(s): treshold"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(client, body, status, words):
    http, _ = client
    response = http.post("/jtp/v1/tag", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_is_read_whatever_its_content_type(client, tiny_tagger, content_type):
    # curl -d sends application/x-www-form-urlencoded; many clients send no Content-Type at all
    http, _ = client
    image = png_b64(3)
    headers = {} if content_type is None else {"content-type": content_type}
    response = http.post("/jtp/v1/tag", content=json.dumps({"image": image}).encode(), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["tags"] == expected(tiny_tagger, image).text


@pytest.mark.parametrize(
    ("raw", "content_type", "words"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"{not json", None, "not valid JSON"),
        (b"image=abc", "application/x-www-form-urlencoded", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "application/octet-stream", "not valid JSON"),
        (b"", "application/json", "body is empty"),
        (b"[1, 2]", "text/plain", "JSON object"),
    ],
)
def test_every_bad_body_gets_one_error_shape(client, raw, content_type, words):
    http, _ = client
    headers = {} if content_type is None else {"content-type": content_type}
    response = http.post("/jtp/v1/tag", content=raw, headers=headers)
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)  # not FastAPI's 422 list
    assert words in body["detail"]
    if len(raw) > 3:
        assert raw.decode("latin-1") not in body["detail"]  # the body is never echoed back


def test_the_default_is_always_a_listed_model(tmp_path, linear_checkpoint):
    # the default was a model folder of another models dir (the WebUI started with another --models-dir)
    standin = WebUI(tmp_path / "webui", cmd_opts={"api": True})
    standin.opts.data.update(jtp_default_model="TINY_PILOT", jtp_download=False)
    standin.install()
    try:
        standin.load_script()
        http = TestClient(start(standin))
        listing = http.get("/jtp/v1/models").json()
        assert listing["default"] in [item["name"] for item in listing["models"]]
        assert listing["default"] == "JTP_PILOT"
        # a request naming no model uses that default (here: not downloaded, downloads off)
        response = http.post("/jtp/v1/tag", json={"image": png_b64(1)})
        assert response.status_code == 404 and "JTP_PILOT" in response.json()["detail"]
        shutil.copytree(linear_checkpoint, standin.models_path / "jtp" / "TINY_PILOT")  # the folder is back
        assert http.get("/jtp/v1/models").json()["default"] == "TINY_PILOT"
        assert http.post("/jtp/v1/tag", json={"image": png_b64(1)}).json()["model"] == "TINY_PILOT"
    finally:
        standin.uninstall()


def test_routes_follow_the_webuis_api_switch(tmp_path, linear_checkpoint):
    standin = WebUI(tmp_path / "webui")  # neither --api nor --nowebui
    standin.install()
    try:
        standin.load_script()
        assert TestClient(start(standin)).get("/jtp/v1/models").status_code == 404  # UI only: no API
        app = start(standin, demo=None)  # --nowebui: demo is None, the API is always served
        assert TestClient(app).get("/jtp/v1/models").status_code == 200
        reloaded = standin.load_script()  # scripts reloaded, app started again on the same app
        for callback in standin.callbacks["app_started"][-1:]:
            callback(None, app)
        assert app.state.jtp_service is reloaded.service  # the routes now serve the new script's model
        assert TestClient(app).get("/jtp/v1/models").status_code == 200
        from jtp_webui import api

        assert api.add_routes(app, reloaded.service) is False  # no second set of routes
    finally:
        standin.uninstall()


def test_api_auth_is_enforced(tmp_path, linear_checkpoint):
    standin = WebUI(tmp_path / "webui", cmd_opts={"api": True, "api_auth": "alice:s3cret,bob:pw"})
    standin.install()
    try:
        standin.load_script()
        http = TestClient(start(standin))
        assert http.get("/jtp/v1/models").status_code == 401
        assert http.get("/jtp/v1/models", auth=("alice", "wrong")).status_code == 401
        assert http.get("/jtp/v1/models", auth=("bob", "pw")).status_code == 200
    finally:
        standin.uninstall()


def test_grayscale_and_transparent_images_are_accepted(client, tiny_tagger):
    http, _ = client
    for mode in ("L", "RGBA"):
        image = png_b64(7, mode=mode)
        body = http.post("/jtp/v1/tag", json={"image": image}).json()
        assert body["results"][0]["tags"] == expected(tiny_tagger, image).text
