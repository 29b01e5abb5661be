// The chat page: one image, many messages; each message is answered by the SAM 3 agent, with its steps
// streamed as server-sent events. The conversation id lives in the URL hash (#c=...), so reloading the
// page (or restarting the server with --state-db) brings the conversation back.
// A video clip instead of an image: the clip is uploaded once (POST /v1/chat/clips) and each message is one
// query of the video agent on the conversation's thread, so a follow-up ("now only the one on the left")
// can choose among the masklets found before; answers list the masklets and show keyframes with them drawn,
// and tracking progress shows in the status line.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { conversation: null, clip: null, busy: false };

function headers(extra = {}) {
  const token = $("token-input").value.trim();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function pngUrl(base64) { return `data:image/png;base64,${base64}`; }

function showImage(src, caption) {
  $("view-empty").hidden = true;
  $("view-video").hidden = true;
  $("view-image").hidden = false;
  $("view-image").src = src;
  $("view-caption").textContent = caption;
}

function enableInput(enabled) {
  $("message-input").disabled = !enabled;
  $("send-button").disabled = !enabled;
}

// -- rendering -------------------------------------------------------------------------------------

function stepText(event) {
  if (event.type === "tool_call") return `${event.name}(${JSON.stringify(event.arguments)})`;
  if (event.type === "retry") return `retry: ${event.text}`;
  // The tool result is written for the model; its first paragraph says what happened.
  return (event.text || `${event.name} done`).split("\n\n")[0];
}

function addStep(turn, event) {
  const item = element("li", `step step-${event.type}`);
  item.appendChild(element("span", "step-text", stepText(event)));
  if (event.overlay_png) {
    const img = element("img", "step-overlay");
    img.alt = "candidate masks after this step";
    img.src = pngUrl(event.overlay_png);
    item.appendChild(img);
  }
  turn.querySelector(".steps").appendChild(item);
}

function describe(answer) {
  if (answer.status === "answered") return `Answer: mask(s) ${answer.mask_ids.join(", ")}`;
  if (answer.status === "no_mask") return "Nothing in the image matches.";
  return `No answer (${answer.status}): ${answer.error}`;
}

function renderAnswer(turn, answer, index) {
  const box = turn.querySelector(".answer");
  box.replaceChildren(element("div", "answer-text", describe(answer)));
  if (answer.overlay_png) {
    const img = element("img", "final-overlay");
    img.alt = "the answer's masks drawn on the image";
    img.src = pngUrl(answer.overlay_png);
    box.appendChild(img);
    showImage(img.src, `After: ${answer.query}`);
  }
  if (answer.mask_png) {
    const link = element("a", "download", "Download mask (PNG)");
    link.href = pngUrl(answer.mask_png);
    link.download = `mask-${index}.png`;
    box.appendChild(link);
  }
}

function newTurn(message) {
  const turn = element("li", "turn");
  turn.appendChild(element("div", "user", message));
  turn.appendChild(element("ol", "steps"));
  turn.appendChild(element("div", "answer"));
  $("turns").appendChild(turn);
  return turn;
}

function describeClip(answer) {
  if (answer.status === "answered") return `Answer: masklet(s) ${answer.masklet_ids.join(", ")}`;
  if (answer.status === "no_mask") return "Nothing in the clip matches.";
  return `No answer (${answer.status}): ${answer.error}`;
}

function renderClipAnswer(turn, answer) {
  const box = turn.querySelector(".answer");
  box.replaceChildren(element("div", "answer-text", describeClip(answer)));
  // With a sampled clip the answer's frame i is frame clip.frame_indices[i] of the uploaded clip.
  const source = (i) => (answer.clip ? answer.clip.frame_indices[i] : i);
  const list = element("ul", "masklets");
  for (const track of answer.annotations.filter((a) => answer.masklet_ids.includes(a.object_id))) {
    const frames = track.segmentations.map((rle, i) => (rle ? i : -1)).filter((i) => i >= 0);
    const span = frames.length
      ? `frames ${source(frames[0])}–${source(frames[frames.length - 1])} (${frames.length} of ${track.segmentations.length})`
      : "on no frame";
    list.appendChild(element("li", "masklet", `masklet ${track.object_id} (${track.phrase || "object"}): ${span}`));
  }
  box.appendChild(list);
  if (answer.overlay_png) {
    const img = element("img", "final-overlay clip-overlay");
    img.alt = "keyframes of the clip with the answer's masklets drawn";
    img.src = pngUrl(answer.overlay_png);
    box.appendChild(img);
  }
}

function progressText(event) {
  const total = event.total ? `/${event.total}` : "";
  return `Tracking… ${event.frames_done}${total} frames, ${event.fps.toFixed(1)} fps, ${event.objects} objects`;
}

// -- server-sent events over fetch (EventSource cannot POST) ----------------------------------------

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

// -- actions ---------------------------------------------------------------------------------------

async function startConversation(file) {
  const form = new FormData();
  form.append("image", file);
  setStatus("Uploading…");
  const created = await (await api("/v1/chat", { method: "POST", body: form })).json();
  state.conversation = created.conversation_id;
  state.clip = null;
  location.hash = `c=${created.conversation_id}`;
  $("turns").replaceChildren();
  showImage(URL.createObjectURL(file), `${created.image.width}×${created.image.height}`);
  enableInput(true);
  setStatus("Ask for something to segment.");
}

function clipCaption(name, clip) {
  const sampled = clip.stride > 1 ? `, every ${clip.stride}th of ${clip.source_frames}` : "";
  return `${name}: ${clip.frames} frames${sampled}`;
}

async function startClip(file) {
  const form = new FormData();
  form.append("video", file);
  setStatus("Uploading the clip…");
  const created = await (await api("/v1/chat/clips", { method: "POST", body: form })).json();
  state.clip = created.conversation_id;
  state.conversation = null;
  history.replaceState(null, "", location.pathname);
  $("turns").replaceChildren();
  $("view-empty").hidden = true;
  $("view-image").hidden = true;
  $("view-video").hidden = false;
  $("view-video").src = URL.createObjectURL(file);
  $("view-caption").textContent = clipCaption(file.name, created.clip);
  setStatus("Ask about the clip, e.g. “the dog that jumps”, then follow up: “now only the one on the left”.");
}

async function sendClip(message) {
  const turn = newTurn(message);
  const body = JSON.stringify({ message, stream: true });
  const response = await api(`/v1/chat/clips/${state.clip}/messages`,
    { method: "POST", body, headers: { "Content-Type": "application/json" } });
  for await (const event of sseEvents(response)) {
    if (event.type === "answer") {
      renderClipAnswer(turn, event.answer);
      setStatus("Done. Ask a follow-up, e.g. “now only the one on the left”.");
    } else if (event.type === "error") {
      turn.querySelector(".answer").replaceChildren(element("div", "error", event.error.message));
      setStatus(event.error.message, true);
    } else if (event.type === "progress") {
      setStatus(progressText(event));
    } else {
      addStep(turn, event);
      setStatus(`Working… ${stepText(event).slice(0, 80)}`);
    }
  }
}

async function send(message) {
  if (state.clip !== null) return sendClip(message);
  const turn = newTurn(message);
  const body = JSON.stringify({ message, stream: true });
  const response = await api(`/v1/chat/${state.conversation}/messages`,
    { method: "POST", body, headers: { "Content-Type": "application/json" } });
  for await (const event of sseEvents(response)) {
    if (event.type === "answer") {
      renderAnswer(turn, event.answer, event.answer.turn_index);
      setStatus("Done. Ask a follow-up, e.g. “only the left one”.");
    } else if (event.type === "error") {
      turn.querySelector(".answer").replaceChildren(element("div", "error", event.error.message));
      setStatus(event.error.message, true);
    } else {
      addStep(turn, event);
      setStatus(`Working… ${stepText(event).slice(0, 80)}`);
    }
  }
}

async function restore(conversationId) {
  const conversation = await (await api(`/v1/chat/${conversationId}`)).json();
  state.conversation = conversationId;
  const blob = await (await api(`/v1/chat/${conversationId}/image`)).blob();
  showImage(URL.createObjectURL(blob), `${conversation.image.width}×${conversation.image.height}`);
  $("turns").replaceChildren();
  for (const turn of conversation.turns) renderAnswer(newTurn(turn.message), turn.answer, turn.index);
  enableInput(true);
  setStatus(conversation.turns.length ? "Conversation restored." : "Ask for something to segment.");
}

async function guarded(action) {
  if (state.busy) return;
  state.busy = true;
  enableInput(false);
  try {
    await action();
  } catch (error) {
    setStatus(error.message, true);
  } finally {
    state.busy = false;
    enableInput(state.conversation !== null || state.clip !== null);
  }
}

$("image-input").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file && file.type.startsWith("video/")) guarded(() => startClip(file));
  else if (file) guarded(() => startConversation(file));
});

$("message-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const message = $("message-input").value.trim();
  if (!message || (state.conversation === null && state.clip === null)) return;
  $("message-input").value = "";
  guarded(() => send(message));
});

$("token-input").value = sessionStorage.getItem("sam3-token") || "";
$("token-input").addEventListener("change", () => sessionStorage.setItem("sam3-token", $("token-input").value));

const fromHash = /^#c=([\w-]+)$/.exec(location.hash);
if (fromHash) guarded(() => restore(fromHash[1]));
