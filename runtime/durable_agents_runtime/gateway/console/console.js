// The durable-agents console: plain JavaScript over the gateway's REST and Server-Sent Events API.
"use strict";

const state = { token: null, runs: [] };
const $ = (id) => document.getElementById(id);

function say(text) { $("status").textContent = text; }

function element(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { ...options, headers, body: options.body && JSON.stringify(options.body) });
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

// Server-Sent Events over fetch (EventSource cannot send the Authorization header).
async function events(response, onEvent) {
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
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      let parsed = data.join("\n");
      try { parsed = JSON.parse(parsed); } catch (_) { /* plain text */ }
      onEvent(name, parsed);
    }
  }
}

function describeEvent(name, data) {
  if (name === "toolCall") return `→ ${data.tool}(${JSON.stringify(data.args)})`;
  if (name === "toolResult") return `← ${data.tool}: ${data.content}`;
  if (name === "result") return `✓ result: ${typeof data.output === "string" ? data.output : JSON.stringify(data.output)}`;
  if (name === "error") return `✗ ${data}`;
  if (name === "end") return "— end of run";
  return null;
}

// "NAMESPACE/NAME" (a select's value) and a sub-path → the agent's API path.
function agentPath(chosen, rest) {
  const cut = chosen.indexOf("/");
  const namespace = chosen.slice(0, cut), name = chosen.slice(cut + 1);
  return `/api/agents/${encodeURIComponent(name)}${rest}?namespace=${encodeURIComponent(namespace)}`;
}

async function loadAgents() {
  const agents = await (await api("/api/agents")).json();
  const body = $("agents").querySelector("tbody");
  body.replaceChildren();
  for (const agent of agents) {
    const row = element("tr");
    row.append(element("th", agent.name, { scope: "row" }), element("td", agent.namespace));
    const health = element("td", agent.ready ? "Ready" : "Not ready", { class: agent.ready ? "ready" : "not-ready" });
    const why = [agent.message, agent.operator_status && `operator: ${agent.operator_status}`].filter(Boolean);
    if (why.length) health.title = why.join("; ");
    row.append(health, element("td", String(agent.workers)), element("td", String(agent.running)));
    body.append(row);
  }
  for (const id of ["run-agent", "chat-agent"]) {
    const select = $(id);
    const chosen = select.value;
    // The value names the namespace too: one name may be served from several namespaces.
    select.replaceChildren(...agents.map((a) => element("option", a.name, { value: `${a.namespace}/${a.name}` })));
    if (chosen) select.value = chosen;
  }
}

async function loadApprovals() {
  const approvals = await (await api("/api/approvals")).json();
  const list = $("approvals");
  const shown = new Set([...list.children].map((li) => li.dataset.key));
  const current = new Set(approvals.map((a) => `${a.run_id}/${a.call.tool_call_id}`));
  for (const li of [...list.children]) if (!current.has(li.dataset.key)) li.remove();
  for (const approval of approvals) {
    const key = `${approval.run_id}/${approval.call.tool_call_id}`;
    if (shown.has(key)) continue;
    list.append(approvalItem(approval, key));
  }
  $("no-approvals").hidden = approvals.length > 0;
}

function approvalItem(approval, key) {
  const { call } = approval;
  const li = element("li", undefined, { "data-key": key, "aria-label": `${call.tool_name} in run ${approval.run_id}` });
  li.append(element("strong", `${call.tool_name}(${call.args_preview})`), element("span", ` · ${approval.agent} · run ${approval.run_id}`));
  const form = element("form", undefined, { "aria-label": `Decide ${call.tool_name}` });
  const reasonId = `reason-${call.tool_call_id}`;
  const reason = element("input", undefined, { id: reasonId, placeholder: "why (told to the model when denied)" });
  const approve = element("button", "Approve", { type: "button" });
  const deny = element("button", "Deny", { type: "button", class: "deny" });
  form.append(element("label", "Reason", { for: reasonId }), reason, approve, deny);
  const decide = async (yes) => {
    try {
      const decision = { tool_call_id: call.tool_call_id, approve: yes, reason: reason.value || null };
      await api(`/api/runs/${encodeURIComponent(approval.run_id)}/decisions`, { method: "POST", body: { decisions: [decision] } });
      say(`${yes ? "Approved" : "Denied"} ${call.tool_name}`);
      li.remove();
      $("no-approvals").hidden = $("approvals").children.length > 0;
    } catch (error) { say(`Could not decide: ${error.message}`); }
  };
  approve.addEventListener("click", () => decide(true));
  deny.addEventListener("click", () => decide(false));
  li.append(form);
  return li;
}

async function startRun(event) {
  event.preventDefault();
  const chosen = $("run-agent").value;
  const agent = chosen.slice(chosen.indexOf("/") + 1);
  const prompt = $("run-prompt").value;
  $("events").replaceChildren();
  $("answer").textContent = "";
  try {
    const run = await (await api(agentPath(chosen, "/runs"), { method: "POST", body: { prompt, watch: true } })).json();
    $("runs").prepend(element("li", `${run.id} · ${agent} · ${prompt}`));
    say(`Started run ${run.id}`);
    let text = "";
    await events(await api(`/api/runs/${encodeURIComponent(run.id)}/events`), (name, data) => {
      if (name === "text") { text += data.delta; $("answer").textContent = text; return; }
      const line = describeEvent(name, data);
      if (line) $("events").append(element("li", line));
      if (name === "result") $("answer").textContent = `Answer: ${typeof data.output === "string" ? data.output : JSON.stringify(data.output)}`;
    });
  } catch (error) { say(`Run failed: ${error.message}`); }
}

async function sendMessage(event) {
  event.preventDefault();
  const chosen = $("chat-agent").value;
  const session = $("chat-session").value;
  const input = $("chat-message");
  const chat = $("chat");
  chat.append(element("li", `you: ${input.value}`));
  const reply = element("li", "agent: ");
  chat.append(reply);
  const prompt = input.value;
  input.value = "";
  let text = "";
  try {
    const path = agentPath(chosen, `/sessions/${encodeURIComponent(session)}/messages`);
    await events(await api(path, { method: "POST", body: { prompt, stream: true } }), (name, data) => {
      if (name === "text") { text += data.delta; reply.textContent = `agent: ${text}`; }
      else if (name === "reply" && !text) reply.textContent = `agent: ${data.output_text}`;
      else if (name === "error") reply.textContent = `error: ${data}`;
    });
  } catch (error) { reply.textContent = `error: ${error.message}`; }
}

async function refresh() {
  if (!state.token) return;
  try {
    await Promise.all([loadAgents(), loadApprovals()]);
    if ($("status").textContent.startsWith("Cannot reach")) say("");
  } catch (error) { say(`Cannot reach the gateway: ${error.message}`); }
}

function useToken(token) {
  state.token = token;
  sessionStorage.setItem("durable-agents-token", token);
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) history.replaceState(null, "", location.pathname);  // keep it out of the address bar
  const token = fromHash || sessionStorage.getItem("durable-agents-token");
  $("token-form").addEventListener("submit", (event) => { event.preventDefault(); useToken($("token").value); });
  $("run-form").addEventListener("submit", startRun);
  $("chat-form").addEventListener("submit", sendMessage);
  $("chat-session").value = `s-${Math.random().toString(36).slice(2, 10)}`;
  if (token) useToken(token); else say("Enter the gateway's bearer token (durable-agents dev prints it).");
  setInterval(refresh, 1000);
});
