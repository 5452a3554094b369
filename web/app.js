import { Api, ApiError } from "./api.js";

const DEFAULT_API = "http://localhost:3000";
const API_KEY = "files.api";

const $ = (id) => document.getElementById(id);
const ui = {
  error: $("error"),
  status: $("status"),
  account: $("account"),
  whoami: $("whoami"),
  authView: $("auth-view"),
  appView: $("app-view"),
  authForm: $("auth-form"),
  loginId: $("login-id"),
  password: $("password"),
  apiForm: $("api-form"),
  apiBase: $("api-base"),
  uploadForm: $("upload-form"),
  uploadFile: $("upload-file"),
  uploadButton: $("upload"),
  progress: $("upload-progress"),
  percent: $("upload-percent"),
  uploadLabel: $("upload-label"),
  files: document.querySelector("#files tbody"),
  pageInfo: $("page-info"),
  prev: $("prev-page"),
  next: $("next-page"),
  pageSize: $("page-size"),
  sessions: $("sessions"),
};

const state = { page: 1, pages: 0 };
const api = new Api(initialApiBase());

// --- messages ---------------------------------------------------------------

function say(text) {
  ui.error.textContent = "";
  ui.status.textContent = text;
}

const SIGNED_OUT = new Set(["invalid_token", "invalid_refresh_token", "token_expired"]);

function fail(error) {
  let text = error instanceof Error ? error.message : String(error);
  if (error instanceof ApiError && SIGNED_OUT.has(error.code) && !api.signedIn) {
    text = text.replace(/\.?$/, ". Sign in again.");
  }
  ui.status.textContent = "";
  ui.error.textContent = text;
}

// Runs an action with its button disabled, reporting any failure in the error area.
async function run(button, action) {
  if (button) button.disabled = true;
  try {
    await action();
  } catch (error) {
    fail(error);
  } finally {
    if (button) button.disabled = false;
  }
}

// --- API address ------------------------------------------------------------

function initialApiBase() {
  const fromQuery = new URLSearchParams(location.search).get("api");
  return fromQuery || localStorage.getItem(API_KEY) || DEFAULT_API;
}

ui.apiBase.value = api.base;

ui.apiForm.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!ui.apiBase.checkValidity()) {
    fail(new Error("Enter the API address as a URL, e.g. http://localhost:3000."));
    return;
  }
  api.base = ui.apiBase.value;
  ui.apiBase.value = api.base;
  localStorage.setItem(API_KEY, api.base);
  say(`Using the API at ${api.base}.`);
});

// --- signing in and out -------------------------------------------------------

function showSignedIn(login) {
  ui.whoami.textContent = login;
  ui.authView.hidden = true;
  ui.appView.hidden = false;
  ui.account.hidden = false;
}

function showSignedOut() {
  ui.authView.hidden = false;
  ui.appView.hidden = true;
  ui.account.hidden = true;
  ui.whoami.textContent = "";
  ui.files.replaceChildren();
  ui.sessions.replaceChildren();
  ui.password.value = "";
  state.page = 1;
  resetProgress();
}

// The failed request itself reports the server's message; here only the view changes.
api.onSessionEnded = () => {
  showSignedOut();
};

ui.authForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const signingUp = event.submitter && event.submitter.value === "signup";
  const id = ui.loginId.value.trim();
  const password = ui.password.value;
  if (!id || !password) {
    fail(new Error("Enter your email or phone and your password."));
    return;
  }
  run(event.submitter, async () => {
    const tokens = signingUp ? await api.signUp(id, password) : await api.signIn(id, password);
    showSignedIn(tokens.id);
    say(signingUp ? `Welcome, ${tokens.id}. Your account is ready.` : `Signed in as ${tokens.id}.`);
    await loadAll();
  });
});

$("logout").addEventListener("click", (event) => {
  run(event.currentTarget, async () => {
    try {
      await api.logout();
    } finally {
      showSignedOut();
    }
    say("Signed out.");
  });
});

$("reload").addEventListener("click", (event) => {
  run(event.currentTarget, async () => {
    await loadAll();
    if (api.signedIn) say("Up to date.");
  });
});

// Everything on the signed-in page, fetched together; the first failure is reported.
async function loadAll() {
  const results = await Promise.allSettled([loadInfo(), loadFiles(), loadSessions()]);
  const failed = results.find((result) => result.status === "rejected");
  if (failed) throw failed.reason;
}

async function loadInfo() {
  const info = await api.info();
  ui.whoami.textContent = info.id;
}

// --- files ------------------------------------------------------------------

async function loadFiles() {
  const listSize = Number(ui.pageSize.value);
  let result = await api.listFiles(state.page, listSize);
  if (result.items.length === 0 && result.pages > 0 && state.page > result.pages) {
    // the last page emptied (a delete, or a bigger page size): show the new last page
    state.page = result.pages;
    result = await api.listFiles(state.page, listSize);
  }
  state.pages = result.pages;
  renderFiles(result);
}

function renderFiles({ items, page, pages, total }) {
  ui.files.replaceChildren(...items.map(fileRow));
  ui.pageInfo.textContent =
    total === 0 ? "No files yet" : `Page ${page} of ${pages} · ${total} ${total === 1 ? "file" : "files"}`;
  updatePager();
}

function updatePager() {
  ui.prev.disabled = state.page <= 1;
  ui.next.disabled = state.page >= state.pages;
}

function fileRow(file) {
  const row = document.createElement("tr");
  row.dataset.id = String(file.id);
  row.append(
    cell(file.name, "name"),
    cell(humanSize(file.size), "num size", `${file.size} bytes`),
    cell(file.mime_type, "type"),
    cell(localTime(file.updated_at), "updated", file.updated_at),
  );

  const actions = document.createElement("td");
  actions.className = "row-actions";

  const download = button("Download", `Download ${file.name}`, "download");
  download.addEventListener("click", () => run(download, () => downloadFile(file)));

  // a real file input inside a label, so Replace works with the keyboard and screen readers
  const replace = document.createElement("label");
  replace.className = "button secondary replace";
  const picker = document.createElement("input");
  picker.type = "file";
  picker.className = "visually-hidden";
  picker.setAttribute("aria-label", `Replace ${file.name}`);
  picker.addEventListener("change", () => {
    const [chosen] = picker.files;
    if (!chosen) return;
    run(null, async () => {
      try {
        await replaceFile(file, chosen);
      } finally {
        picker.value = ""; // choosing the same file again must fire "change" again
      }
    });
  });
  replace.append("Replace", picker);

  const remove = button("Delete", `Delete ${file.name}`, "delete danger");
  remove.addEventListener("click", () => {
    if (confirm(`Delete “${file.name}”? This cannot be undone.`)) run(remove, () => deleteFile(file));
  });

  actions.append(download, replace, remove);
  row.append(actions);
  return row;
}

async function uploadFiles(files) {
  let done = 0;
  for (const file of files) {
    const counter = files.length > 1 ? ` (${done + 1} of ${files.length})` : "";
    ui.uploadLabel.textContent = `Uploading ${file.name}${counter}`;
    const stored = await api.upload(file, showProgress);
    done += 1;
    say(`Uploaded ${stored.name} (${humanSize(stored.size)}).`);
  }
  ui.uploadLabel.textContent = done === 1 ? "Upload complete" : `${done} uploads complete`;
  if (done > 1) say(`Uploaded ${done} files.`);
  state.page = 1; // newest first: the new files are on the first page
  await loadFiles();
}

async function replaceFile(file, chosen) {
  ui.uploadLabel.textContent = `Replacing ${file.name} with ${chosen.name}`;
  const stored = await api.replace(file.id, chosen, showProgress);
  ui.uploadLabel.textContent = "Replace complete";
  say(`Replaced ${file.name} with ${stored.name} (${humanSize(stored.size)}).`);
  await loadFiles();
}

async function deleteFile(file) {
  await api.deleteFile(file.id);
  say(`Deleted ${file.name}.`);
  await loadFiles();
}

async function downloadFile(file) {
  const { name, blob } = await api.download(file.id, file.name);
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // the browser reads the blob asynchronously after the click
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  say(`Downloaded ${name}.`);
}

function showProgress(loaded, total) {
  const percent = total > 0 ? Math.floor((loaded / total) * 100) : 100;
  ui.progress.value = percent;
  ui.percent.textContent = `${percent} %`;
}

function resetProgress() {
  ui.progress.value = 0;
  ui.percent.textContent = "0 %";
  ui.uploadLabel.textContent = "No upload yet";
}

ui.uploadForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const files = [...ui.uploadFile.files];
  if (files.length === 0) {
    fail(new Error("Choose a file to upload."));
    return;
  }
  run(ui.uploadButton, async () => {
    try {
      await uploadFiles(files);
    } finally {
      ui.uploadForm.reset();
    }
  });
});

// Both page buttons stay disabled while a page loads, so quick clicks cannot skip pages.
function turnPage(delta) {
  const from = state.page;
  ui.prev.disabled = true;
  ui.next.disabled = true;
  run(null, async () => {
    state.page = Math.max(1, from + delta);
    try {
      await loadFiles();
    } catch (error) {
      state.page = from;
      throw error;
    } finally {
      updatePager();
    }
  });
}

ui.prev.addEventListener("click", () => turnPage(-1));
ui.next.addEventListener("click", () => turnPage(1));

ui.pageSize.addEventListener("change", () => {
  state.page = 1;
  run(null, loadFiles);
});

// --- devices ----------------------------------------------------------------

async function loadSessions() {
  const { items } = await api.sessions();
  ui.sessions.replaceChildren(...items.map(sessionItem));
}

function sessionItem(session) {
  const item = document.createElement("li");
  item.dataset.id = session.id;
  if (session.current) item.classList.add("current");

  const about = document.createElement("div");
  const title = document.createElement("strong");
  title.textContent = describeAgent(session.user_agent);
  const details = document.createElement("span");
  details.className = "hint";
  details.textContent =
    `${session.ip || "unknown address"} · signed in ${localTime(session.created_at)}` +
    ` · last used ${localTime(session.last_used_at)}`;
  details.title = session.user_agent || "";
  about.append(title, " ", details);
  item.append(about);

  if (session.current) {
    const mark = document.createElement("span");
    mark.className = "badge";
    mark.textContent = "This device";
    item.append(mark);
  } else {
    const end = button("Sign out this device", `Sign out ${title.textContent} (${session.ip || "unknown address"})`, "end-session");
    end.addEventListener("click", () =>
      run(end, async () => {
        await api.endSession(session.id);
        say("That device is signed out.");
        await loadSessions();
      }),
    );
    item.append(end);
  }
  return item;
}

// Most specific first: Edge and Opera also say "Chrome", Chrome also says "Safari".
const BROWSERS = ["Edg", "OPR", "Firefox", "HeadlessChrome", "Chromium", "Chrome", "Safari"];
const SYSTEMS = ["Windows", "Android", "iPhone", "iPad", "Mac OS X", "CrOS", "Linux"];

function describeAgent(agent) {
  if (!agent) return "Unknown device";
  const browser = BROWSERS.find((name) => agent.includes(`${name}/`));
  const system = SYSTEMS.find((name) => agent.includes(name));
  if (!browser) return agent.length > 60 ? `${agent.slice(0, 60)}…` : agent;
  const shown = browser === "Edg" ? "Edge" : browser === "OPR" ? "Opera" : browser;
  return `${shown}${system ? ` on ${system}` : ""}`;
}

// --- helpers ----------------------------------------------------------------

function cell(text, className, title) {
  const td = document.createElement("td");
  td.className = className;
  td.textContent = text;
  if (title) td.title = title;
  return td;
}

function button(text, label, className) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.setAttribute("aria-label", label);
  return b;
}

function humanSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = -1;
  do {
    value /= 1024;
    unit += 1;
  } while (value >= 1024 && unit < units.length - 1);
  return `${value.toFixed(1)} ${units[unit]}`;
}

const TIME_FORMAT = { dateStyle: "medium", timeStyle: "short" };

function localTime(iso) {
  if (!iso) return "—";
  const moment = new Date(iso);
  return Number.isNaN(moment.getTime()) ? iso : moment.toLocaleString(undefined, TIME_FORMAT);
}

showSignedOut();
