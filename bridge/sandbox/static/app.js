// The sandbox page: the customer's chat (left) and the simulator's agent desk (right).
// Plain script, no build step, nothing loaded from elsewhere. Text from the network is only
// ever set with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  function randomHex(bytes) {
    const values = crypto.getRandomValues(new Uint8Array(bytes));
    return Array.from(values, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function item(list, kind, who, text) {
    const li = document.createElement("li");
    li.className = `msg-${kind}`;
    if (who) {
      const label = document.createElement("span");
      label.className = "who-said";
      label.textContent = who;
      li.append(label);
    }
    li.append(document.createTextNode(text));
    list.append(li);
    list.scrollTop = list.scrollHeight;
    return li;
  }

  async function postJson(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }

  // ---------------------------------------------------------------- what runs

  fetch("/api/info")
    .then((r) => r.json())
    .then((info) => {
      for (const id of ["bot-label", "chat-bot-badge"]) {
        const badge = $(id);
        badge.textContent = info.bot.label;
        badge.classList.toggle("badge-demo", info.bot.kind === "demo");
      }
      const api = info.api === "chat-v2" ? "Chat API v2" : "Chat Gateway";
      $("api-label").textContent = `8x8 simulator (${api})`;
      $("desk-badge").textContent = `8x8 simulator · queue ${info.queueId}`;
    })
    .catch(() => { $("bot-label").textContent = "unknown (the sandbox did not answer)"; });

  // ---------------------------------------------------------------- customer's chat

  const sender = `web-${randomHex(6)}`;
  const chatLog = $("chat-log");
  const chatTyping = $("chat-typing");
  const chatStatus = $("chat-status");
  $("sender-id").textContent = `You are ${sender} (the Rasa sender id).`;

  function showTyping(on, agent) {
    chatTyping.hidden = !on;
    chatTyping.textContent = on ? `${agent || "The agent"} is typing…` : "";
  }

  const chatEvents = new EventSource(`/api/chat/${encodeURIComponent(sender)}/events`);
  chatEvents.onopen = () => { chatStatus.textContent = ""; };
  chatEvents.onerror = () => { chatStatus.textContent = "Connection lost; reconnecting…"; };
  chatEvents.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.kind === "typing") {
      showTyping(message.on, message.agent);
      return;
    }
    if (message.kind === "agent") {
      showTyping(false);
      item(chatLog, "agent", `${message.agent} (agent)`, message.text);
    } else if (message.kind === "notice") {
      addButtons(item(chatLog, "notice", null, message.text), message.buttons);
    } else {
      addButtons(item(chatLog, "bot", "Bot", message.text), message.buttons);
    }
  };

  // A bot message's buttons (the survey's): a click sends the payload, as chat widgets do.
  function addButtons(li, buttons) {
    if (!Array.isArray(buttons) || buttons.length === 0) return;
    const row = document.createElement("div");
    row.className = "msg-buttons";
    for (const b of buttons) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = b.title;
      button.addEventListener("click", () => say(b.payload, b.title));
      row.append(button);
    }
    li.append(row);
  }

  // Messages leave in the order they were typed, one at a time (as a real chat widget).
  let sending = Promise.resolve();
  function say(text, shown) {
    item(chatLog, "user", "You", shown || text);
    sending = sending.then(() =>
      postJson(`/api/chat/${encodeURIComponent(sender)}/messages`, { text })
        .then(() => { chatStatus.textContent = ""; })
        .catch((error) => { item(chatLog, "error", null, `Not delivered: ${error.message}`); })
    );
    return sending;
  }

  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    say(text);
  });
  // A button's payload, as Rasa chat widgets send it: the command goes, its title shows.
  const askHuman = () => say("/human_handoff", "Talk to a person");
  const endChat = () => say("/end_handoff", "End chat with agent");
  $("ask-human").addEventListener("click", askHuman);
  $("end-chat").addEventListener("click", endChat);
  document.addEventListener("keydown", (event) => {
    if (!event.altKey || event.ctrlKey || event.metaKey) return;
    const key = event.key.toLowerCase();
    if (key === "h") { event.preventDefault(); askHuman(); }
    if (key === "e") { event.preventDefault(); endChat(); }
  });

  // ---------------------------------------------------------------- agent desk

  const conversations = new Map();
  let selected = null;
  const deskStatus = $("desk-status");

  function customerFields(customer) {
    // Gateway `user` (extra fields in additionalProperties) or Chat API v2 `customer` (flat).
    const fields = [];
    for (const [key, value] of Object.entries(customer || {})) {
      if (key === "additionalProperties" && Array.isArray(value)) {
        for (const extra of value) fields.push([extra.key, extra.value]);
      } else if (value !== null && typeof value !== "object") {
        fields.push([key, value]);
      }
    }
    return fields;
  }

  function customerName(conv) {
    // The example bot has no name slot, so the customer is usually known by sender id only.
    const fields = customerFields(conv.customer);
    const name = fields.find(([key]) => key === "name") || fields.find(([key]) => key === "rasaSenderId");
    return name ? String(name[1]) : "Customer";
  }

  function stateOf(conv) {
    if (conv.state === "idle") return { cls: "state-ended", text: "ended" };
    if (conv.agent) return { cls: "state-agent", text: `with ${conv.agent.name}` };
    return { cls: "state-waiting", text: "waiting" };
  }

  function authorLabel(message) {
    if (message.authorType === "agent") return message.authorName || "Agent";
    if (message.authorType === "user") return "Customer";
    if (message.authorType === "bot") return "Bot";
    return message.authorType;
  }

  function renderList() {
    const list = $("conv-list");
    // Rebuilding the list must not take the keyboard focus away from it.
    const focused = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.id : undefined;
    list.replaceChildren();
    const all = [...conversations.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    $("conv-empty").hidden = all.length > 0;
    for (const conv of all) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.id = conv.id;
      button.setAttribute("aria-current", String(conv.id === selected));
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = customerName(conv);
      const state = stateOf(conv);
      const pill = document.createElement("span");
      pill.className = `state ${state.cls}`;
      pill.textContent = state.text;
      const last = conv.messages[conv.messages.length - 1] || conv.history[conv.history.length - 1];
      const preview = document.createElement("span");
      preview.className = "preview";
      preview.textContent = last ? last.text : "";
      button.append(name, pill, preview);
      button.addEventListener("click", () => { selected = conv.id; render(); });
      li.append(button);
      list.append(li);
      if (conv.id === focused) button.focus();
    }
  }

  function renderConversation() {
    const view = $("conv-view");
    const conv = conversations.get(selected);
    view.hidden = !conv;
    if (!conv) return;
    $("conv-title").textContent = customerName(conv);
    const state = stateOf(conv);
    $("conv-state").className = `state ${state.cls}`;
    $("conv-state").textContent = state.text;

    const dl = $("conv-customer");
    dl.replaceChildren();
    for (const [key, value] of customerFields(conv.customer)) {
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      dl.append(dt, dd);
    }
    const history = $("conv-history");
    history.replaceChildren();
    for (const m of conv.history) item(history, m.authorType === "user" ? "user" : "bot", authorLabel(m), m.text);
    if (!conv.history.length) item(history, "notice", null, "No bot transcript.");
    const messages = $("conv-messages");
    messages.replaceChildren();
    for (const m of conv.messages) {
      const kind = m.authorType === "agent" ? "agent" : m.authorType === "user" ? "user" : "bot";
      item(messages, kind, authorLabel(m), m.text);
    }

    const live = conv.state !== "idle";
    $("accept").disabled = !live || Boolean(conv.agent);
    for (const id of ["leave", "transfer", "transfer-queue", "reply-input", "reply-send"]) {
      $(id).disabled = !conv.agent;
    }
  }

  function render() {
    renderList();
    renderConversation();
  }

  function remember(conv) {
    conversations.set(conv.id, conv);
    // The newest waiting conversation comes up by itself when nothing is open yet.
    if (!selected && conv.state !== "idle" && !conv.agent) selected = conv.id;
  }

  async function act(action, body) {
    if (!selected) return;
    try {
      const conv = await postJson(`/_sim/conversations/${encodeURIComponent(selected)}/${action}`, body);
      deskStatus.textContent = "";
      remember(conv);
      render();
    } catch (error) {
      deskStatus.textContent = `${action} failed: ${error.message}`;
    }
  }

  fetch("/_sim/conversations")
    .then((r) => r.json())
    .then((data) => { data.conversations.forEach(remember); render(); })
    .catch(() => { deskStatus.textContent = "Could not load the desk."; });

  const deskEvents = new EventSource("/_sim/events");
  deskEvents.addEventListener("conversation", (event) => {
    remember(JSON.parse(event.data).conversation);
    render();
  });
  deskEvents.onerror = () => { deskStatus.textContent = "Connection lost; reconnecting…"; };
  deskEvents.onopen = () => { deskStatus.textContent = ""; };

  $("accept").addEventListener("click", () =>
    act("accept", { agentName: $("agent-name").value.trim() || "Anna" }));
  $("leave").addEventListener("click", () => { stopTyping(); act("leave"); });
  $("transfer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    stopTyping();
    act("transfer", { queueId: $("transfer-queue").value.trim() });
  });

  // The agent's typing indicator: on with the first key, off after a pause or on sending.
  let typingTimer = null;
  function stopTyping() {
    if (typingTimer === null) return;
    clearTimeout(typingTimer);
    typingTimer = null;
    $("desk-typing").hidden = true;
    act("typing", { on: false });
  }
  $("reply-input").addEventListener("input", () => {
    if (typingTimer === null) {
      $("desk-typing").hidden = false;
      act("typing", { on: true });
    } else {
      clearTimeout(typingTimer);
    }
    typingTimer = setTimeout(stopTyping, 3000);
  });
  $("reply-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("reply-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    await act("say", { text });
    stopTyping();
  });
})();
