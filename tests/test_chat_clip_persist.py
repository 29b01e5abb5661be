"""Clip conversations in the state file (``/v1/chat/clips`` on a server with ``state_db``): a second server on the
same file shows the conversation and continues its agent thread with the masklets (ids and tracks) of the first;
retention deletes the row, the thread and the clip folder together; a removed clip folder is a clear 410;
without a state file nothing outlives the server."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from http_helpers import client_of, serve, wait_for
from test_chat_clip_thread import _message, thread_responder
from test_video_agent_http import call, llm_config

from agent.testing import ScriptedLLM, message_texts

FRAMES = 6


def _create(client, clip: Path, max_frames: int) -> str:
    created = client.post("/v1/chat/clips", files={"video": ("clip.mp4", clip.read_bytes(), "video/mp4")},
                          data={"params": json.dumps({"max_frames": max_frames})})
    assert created.status_code == 201, created.text
    return created.json()["conversation_id"]


def _rows(state_db: str, thread_id: str) -> dict[str, int]:
    """Rows stored for ``thread_id``, by table (the checkpointer's tables included)."""
    counts = {}
    with sqlite3.connect(state_db) as conn:
        for table, column in (("clip_conversations", "id"), ("clip_turns", "conversation_id"),
                              ("state_threads", "thread_id"), ("checkpoints", "thread_id"), ("writes", "thread_id")):
            counts[table] = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (thread_id,)).fetchone()[0]
    return counts


def test_clip_conversation_survives_a_restart(engine, video_engine, clip, tmp_path):
    state_db = str(tmp_path / "state.sqlite")
    with ScriptedLLM(responder=thread_responder()) as llm:
        with client_of(serve(engine, video_engine, video=True, llm=llm_config(llm), state_db=state_db)) as client:
            conversation_id = _create(client, clip, max_frames=3)  # sampled: every 2nd frame
            first = _message(client, conversation_id, "the discs")[-1]["answer"]
            before = client.get(f"/v1/chat/clips/{conversation_id}").json()
        folder = Path(f"{state_db}.clips") / conversation_id
        # Only the sampled frames are kept next to the state file (the upload itself is not needed any more).
        assert [p.name for p in folder.iterdir()] == ["frames"]
        assert sorted(p.name for p in (folder / "frames").iterdir()) == ["000000.png", "000002.png", "000004.png"]

        with client_of(serve(engine, video_engine, video=True, llm=llm_config(llm), state_db=state_db)) as client:
            after = client.get(f"/v1/chat/clips/{conversation_id}").json()
            second = _message(client, conversation_id, "now only the one on the left")
            shutil.rmtree(folder)  # the clip is gone: the transcript stays readable, a message is a clear 410
            gone = client.post(f"/v1/chat/clips/{conversation_id}/messages", json={"message": "and the right one?"})
            transcript = client.get(f"/v1/chat/clips/{conversation_id}")
            assert _rows(state_db, conversation_id)["checkpoints"] > 0
            assert client.delete(f"/v1/chat/clips/{conversation_id}").status_code == 204
            assert client.get(f"/v1/chat/clips/{conversation_id}").status_code == 404
        assert not llm.errors, llm.errors
        follow_up = [r for r in llm.requests if "Now the user says" in message_texts(r)[1]]
    assert after == before and before["clip"]["frame_indices"] == [0, 2, 4]
    assert [t["message"] for t in after["turns"]] == ["the discs"] and after["turns"][0]["answer"]["turn_index"] == 0
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "clip_gone"
    assert "no longer on this server" in gone.json()["error"]["message"]
    assert transcript.status_code == 200 and len(transcript.json()["turns"]) == 2
    assert set(_rows(state_db, conversation_id).values()) == {0}  # DELETE removed row, turns and thread
    two = second[-1]["answer"]
    assert two["turn_index"] == 1
    if first["status"] != "answered":  # random weights: the phrase found nothing, so there is nothing to follow up
        assert first["status"] == "no_mask"
        pytest.skip("the tiny model's phrase found no masklet on this machine")
    # The restarted server continued the thread: the first answer's masklets were shown with their ids (from the
    # checkpointer in the state file) and the chosen one kept its track (from the stored masklet tracks).
    assert follow_up and any("still available" in t for t in message_texts(follow_up[0]))
    assert two["status"] == "answered" and two["masklet_ids"] == [min(first["masklet_ids"])]
    assert two["phrases_tried"] == [] and not any(e["type"] == "progress" for e in second)  # not tracked again
    [annotation] = [a for a in two["annotations"] if a["object_id"] in two["masklet_ids"]]
    [earlier] = [a for a in first["annotations"] if a["object_id"] == two["masklet_ids"][0]]
    assert annotation["segmentations"] == earlier["segmentations"]
    assert any(rle is not None for rle in annotation["segmentations"])


def test_retention_deletes_row_thread_and_clip_folder(engine, video_engine, clip, tmp_path):
    state_db = str(tmp_path / "state.sqlite")
    with ScriptedLLM([call("report_no_mask")]) as llm:
        server = serve(engine, video_engine, video=True, llm=llm_config(llm), state_db=state_db,
                       retention_sweep_s=0.05)
        with client_of(server) as client:
            conversation_id = _create(client, clip, max_frames=FRAMES)
            answer = _message(client, conversation_id, "the discs")[-1]["answer"]
            folder = Path(f"{state_db}.clips") / conversation_id
            stored = _rows(state_db, conversation_id)
            assert folder.is_dir() and [p.name for p in folder.iterdir()] == ["upload.mp4"]  # not sampled: the clip
            with sqlite3.connect(state_db) as conn:  # as if unused for longer than --retention-days
                conn.execute("UPDATE state_threads SET last_used = 0 WHERE thread_id = ?", (conversation_id,))
            assert wait_for(lambda: not folder.exists())
            assert wait_for(lambda: set(_rows(state_db, conversation_id).values()) == {0}), \
                _rows(state_db, conversation_id)
            missing = client.get(f"/v1/chat/clips/{conversation_id}")
            message = client.post(f"/v1/chat/clips/{conversation_id}/messages", json={"message": "again"})
    assert answer["status"] == "no_mask"
    assert stored["clip_conversations"] == stored["clip_turns"] == 1 and stored["checkpoints"] > 0
    assert missing.status_code == 404 and "retention" in missing.json()["error"]["message"]
    assert message.status_code == 404


def test_without_a_state_file_clip_conversations_stay_in_memory(engine, video_engine, clip, tmp_path):
    with ScriptedLLM([]) as llm:
        server = serve(engine, video_engine, video=True, llm=llm_config(llm))
        with client_of(server) as client:
            conversation_id = _create(client, clip, max_frames=FRAMES)
            chats = server.app.state.clip_chats
            folder = chats.get(conversation_id).folder
            assert chats.stored is None and folder.is_dir()
            assert client.get(f"/v1/chat/clips/{conversation_id}").status_code == 200
        assert not folder.exists()  # deleted with the server
        with client_of(serve(engine, video_engine, video=True, llm=llm_config(llm))) as client:
            missing = client.get(f"/v1/chat/clips/{conversation_id}")
    assert missing.status_code == 404 and "not across restarts" in missing.json()["error"]["message"]
    assert not list(tmp_path.iterdir())  # nothing written next to a state file, since there is none
