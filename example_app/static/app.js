import { connect } from "sse-sessions";

const BADGES = { queued: "Queued", running: "Running", done: "Done", lost: "Interrupted" };
const streams = new Set();

function clone(id) {
  return document.getElementById(id).content.firstElementChild.cloneNode(true);
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return response.json();
}

// The header's indicator sums up every stream of the page.
function showLive() {
  const states = [...streams].map((stream) => stream.state);
  const state = states.includes("connecting") ? "connecting" : states.includes("open") ? "open" : "idle";
  const live = document.getElementById("live");
  live.dataset.state = state;
  live.querySelector(".label").textContent =
    { connecting: "Reconnecting…", open: "Live", idle: "Idle" }[state];
}

// Watch one job's session; `card` shows its connection state in data-connection.
function watch(job, card, onLost) {
  const stream = connect(job.url, {
    onStateChange(state) {
      card.dataset.connection = state;
      if (state === "closed") streams.delete(stream);
      showLive();
    },
  });
  streams.add(stream);
  showLive();
  // After a reset some events are gone: the server may even have restarted
  // and forgotten the job.
  stream.on("reset", async () => {
    const response = await fetch(`/jobs/${job.id}`);
    if (response.status === 404) {
      stream.close();
      onLost();
    }
  });
  return stream;
}

function setState(card, state) {
  card.dataset.state = state;
  const badge = card.querySelector(".badge");
  if (badge) badge.textContent = BADGES[state];
}

function addJob(job) {
  const card = clone("job-template");
  card.dataset.jobId = job.id;
  card.querySelector(".title").textContent = job.title;
  setState(card, "queued");
  document.getElementById("jobs").prepend(card);
  document.getElementById("jobs-empty").hidden = true;

  const bar = card.querySelector(".bar");
  const log = card.querySelector(".log");
  const setProgress = (data) => {
    if (typeof data.percent === "number") {
      bar.querySelector(".fill").style.width = `${data.percent}%`;
      bar.setAttribute("aria-valuenow", data.percent);
      card.querySelector(".percent").textContent = `${data.percent}%`;
    }
    if (data.status) card.querySelector(".status").textContent = data.status;
  };
  const addLine = (className, label, text, n) => {
    const item = document.createElement("li");
    item.className = className;
    if (n !== undefined) item.dataset.n = n;
    item.append(Object.assign(document.createElement("span"), { className: "n", textContent: label }));
    item.append(text);
    log.append(item);
    log.scrollTop = log.scrollHeight;
    const lines = log.querySelectorAll("li[data-n]").length;
    card.querySelector(".count").textContent = `${lines} line${lines === 1 ? "" : "s"}`;
  };

  const stream = watch(job, card, () => {
    setState(card, "lost");
    card.querySelector(".status").textContent = "Interrupted: the server restarted and lost this job.";
  });
  stream
    .on("progress", (data) => {
      setState(card, "running");
      setProgress(data);
    })
    .on("log", (data) => addLine("line", String(data.n).padStart(2, "0"), data.text, data.n))
    .on("error", (data) => addLine("warn", "!", data.message))
    .on("reset", () => addLine("gap", "…", "Some updates were missed while disconnected."))
    .on("complete", (data) => {
      setState(card, "done");
      setProgress(data);
    });
}

function addAnswer(job) {
  const card = clone("answer-template");
  card.dataset.jobId = job.id;
  card.querySelector(".question").textContent = job.question;
  document.getElementById("answers").prepend(card);
  const text = card.querySelector(".text");
  const stream = watch(job, card, () => {
    setState(card, "lost");
    text.textContent = "The server restarted before this answer was finished.";
  });
  stream
    .on("token", (data) => {
      setState(card, "running");
      text.append(data.text);
    })
    .on("complete", () => setState(card, "done"));
}

function add(job) {
  if (document.querySelector(`[data-job-id="${job.id}"]`)) return;
  (job.kind === "answer" ? addAnswer : addJob)(job);
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-start]");
  if (!button) return;
  button.disabled = true;
  try {
    add(await postJson("/jobs", { kind: button.dataset.start }));
  } finally {
    button.disabled = false;
  }
});

document.getElementById("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = new FormData(event.target).get("question");
  add(await postJson("/answers", { question }));
});

// The controls wait for the jobs so far, so that new ones come on top.
const { jobs } = await (await fetch("/jobs")).json();
jobs.forEach(add);
document.querySelectorAll("button").forEach((button) => (button.disabled = false));
