"""The parts of :mod:`agent.testing`, the scripted stand-ins for the multimodal LLM: import them from there.

* :mod:`.reply`: :class:`Reply`, one scripted answer, and the completion JSON made of it;
* :mod:`.script`: the script, the responder and the records, and how one HTTP request is answered from them;
* :mod:`.in_process`: :class:`ScriptedModel`, served through an httpx transport (no sockets);
* :mod:`.http_server`: :class:`ScriptedLLM`, served over HTTP on 127.0.0.1.
"""
