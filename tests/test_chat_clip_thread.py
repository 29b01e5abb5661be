"""Chat about a clip over HTTP (``/v1/chat/clips``): a follow-up continues the video agent's thread, so the
masklets of the first answer are shown to the model again with their ids and chosen without tracking again;
every answer carries an overlay of keyframes with the chosen masklets drawn."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from http_helpers import client_of, serve, sse_events
from PIL import Image
from test_video_agent_http import call, llm_config
from video_fixtures import HEIGHT, WIDTH

from agent.testing import Reply, ScriptedLLM, message_texts
from sam3_core.postprocess import rle_to_mask

FRAMES = 6
EARLIER = "Masklets found for an earlier query on this video are still available"


def thread_responder(phrase: str = "disc"):
    """First message: track ``phrase``, then choose every masklet it found (an unknown id first makes the retry
    list the valid ones). A follow-up: choose the lowest earlier masklet id shown, without tracking again."""

    def respond(body: dict) -> Reply:
        texts = message_texts(body)
        valid = re.search(r"Valid ids are \[([0-9, ]+)\]", texts[-1])
        if valid is not None:
            return call("select_masklets_and_return", masklet_ids=[int(v) for v in valid.group(1).split(",")])
        if "Now the user says" in texts[1]:
            earlier = next((t for t in texts if EARLIER in t), "")
            ids = [int(i) for i in re.findall(r'(\d+) \("', earlier)]
            return call("select_masklets_and_return", masklet_ids=[min(ids)]) if ids else call("report_no_mask")
        if len(texts) == 2:
            return call("segment_phrase", text_prompt=phrase)
        if "Valid ids are" in texts[-1] or "no masklet" in texts[-1].lower():
            return call("report_no_mask")
        return call("select_masklets_and_return", masklet_ids=[999])

    return respond


def _message(client, conversation_id: str, message: str) -> list[dict]:
    with client.stream("POST", f"/v1/chat/clips/{conversation_id}/messages",
                       json={"message": message, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        return sse_events(response)


def test_follow_up_continues_the_thread_with_overlays(engine, video_engine, clip):
    with ScriptedLLM(responder=thread_responder()) as llm:
        server = serve(engine, video_engine, video=True, llm=llm_config(llm))
        with client_of(server) as client:
            created = client.post("/v1/chat/clips", files={"video": ("clip.mp4", clip.read_bytes(), "video/mp4")},
                                  data={"params": json.dumps({"max_frames": FRAMES})})
            assert created.status_code == 201, created.text
            conversation_id = created.json()["conversation_id"]
            assert created.json()["clip"]["frames"] == FRAMES and created.json()["clip"]["stride"] == 1
            first = _message(client, conversation_id, "the discs")
            second = _message(client, conversation_id, "now only the one on the left")
            transcript = client.get(f"/v1/chat/clips/{conversation_id}").json()
            assert client.delete(f"/v1/chat/clips/{conversation_id}").status_code == 204
            assert client.get(f"/v1/chat/clips/{conversation_id}").status_code == 404
            assert client.delete(f"/v1/chat/clips/{conversation_id}").status_code == 404
        assert not llm.errors, llm.errors
        follow_up = [r for r in llm.requests if "Now the user says" in message_texts(r)[1]]
    one, two = first[-1]["answer"], second[-1]["answer"]
    assert [t["message"] for t in transcript["turns"]] == ["the discs", "now only the one on the left"]
    assert (one["turn_index"], two["turn_index"]) == (0, 1) and two["query"] == "now only the one on the left"
    assert any(e["type"] == "progress" for e in first)  # the phrase was tracked in the first message
    if one["status"] != "answered":  # random weights: the phrase found nothing, so there is nothing to follow up
        assert one["status"] == "no_mask" and two["status"] == "no_mask"
        pytest.skip("the tiny model's phrase found no masklet on this machine")
    assert follow_up, "the follow-up was not sent with the earlier turns"
    opening = message_texts(follow_up[0])[1]
    assert "Earlier in this conversation about the same clip" in opening and f"{one['masklet_ids']}" in opening
    assert any(EARLIER in t for t in message_texts(follow_up[0]))  # the earlier masklets are shown again
    assert two["status"] == "answered" and two["masklet_ids"] == [min(one["masklet_ids"])]
    assert two["phrases_tried"] == [] and not any(e["type"] == "progress" for e in second)  # not tracked again
    [annotation] = [a for a in two["annotations"] if a["object_id"] in two["masklet_ids"]]
    [before] = [a for a in one["annotations"] if a["object_id"] == two["masklet_ids"][0]]
    assert annotation["segmentations"] == before["segmentations"]  # the same track, carried over
    assert any(rle is not None for rle in annotation["segmentations"])
    assert all(rle_to_mask(r).shape == (HEIGHT, WIDTH) for r in annotation["segmentations"] if r is not None)
    for answer in (one, two):
        overlay = Image.open(io.BytesIO(base64.b64decode(answer["overlay_png"])))
        assert overlay.format == "PNG" and overlay.width >= WIDTH
    assert video_engine.session_ids() == []


def test_clip_chat_errors(engine, video_engine, clip):
    with ScriptedLLM([]) as llm:
        server = serve(engine, video_engine, video=True, llm=llm_config(llm), video_agent_max_frames=4)
        with client_of(server) as client:
            over = client.post("/v1/chat/clips", files={"video": ("clip.mp4", clip.read_bytes(), "video/mp4")},
                               data={"params": json.dumps({"max_frames": 5})})
            unknown = client.post("/v1/chat/clips/clip-nope/messages", json={"message": "x"})
            not_multipart = client.post("/v1/chat/clips", json={"max_frames": 2})
            sampled = client.post("/v1/chat/clips", files={"video": ("clip.mp4", clip.read_bytes(), "video/mp4")})
        assert not llm.requests
    assert over.status_code == 422 and over.json()["error"]["code"] == "max_frames_over_cap"
    assert unknown.status_code == 404 and not_multipart.status_code == 415
    assert sampled.status_code == 201 and sampled.json()["clip"]["frame_indices"] == [0, 2, 4]
    no_video = serve(engine, video=False, llm=llm_config(llm))
    with client_of(no_video) as client:
        assert client.post("/v1/chat/clips", files={"video": ("c.mp4", b"x", "video/mp4")}).status_code == 503


def test_clip_conversations_are_bounded_in_number_and_idle_time(tmp_path):
    import asyncio
    import time

    from serving.chat.clips import ClipChats
    from serving.clips import ClipPlan
    from serving.http.errors import ApiError

    plan = ClipPlan("clip.mp4", 6, 10.0, WIDTH, HEIGHT, 1, tuple(range(6)), "clip.mp4")

    async def scenario() -> None:
        chats = ClipChats(max_count=2, idle_s=60.0)
        folders = [tmp_path / f"c{i}" for i in range(4)]
        for folder in folders:
            folder.mkdir()
        first = await chats.add("a", folders[0], plan)
        second = await chats.add("b", folders[1], plan)
        second.last_used = first.last_used - 1  # the least recently used one makes room
        third = await chats.add("c", folders[2], plan)
        assert len(chats) == 2 and not folders[1].exists() and folders[0].exists()
        with pytest.raises(ApiError) as gone:
            chats.get(second.id)
        assert gone.value.status == 404
        async with chats.get(first.id).lock, chats.get(third.id).lock:  # both busy: no room, nothing forgotten
            with pytest.raises(ApiError) as busy:
                await chats.add("d", folders[3], plan)
            assert busy.value.status == 429 and len(chats) == 2
            assert await chats.sweep(now=time.monotonic() + 3600) == []  # busy ones are never swept
        assert sorted(await chats.sweep(now=time.monotonic() + 3600)) == sorted([first.id, third.id])
        assert len(chats) == 0 and not folders[0].exists() and not folders[2].exists()

    asyncio.run(scenario())
