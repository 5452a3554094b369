// What the page says when the API refuses something: people's words instead of the envelope's,
// sizes in KiB/MiB/GiB instead of bytes, and, for a form, which field the words belong next to.

import { ApiError } from "./api.js";

export function humanSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = -1;
  do {
    value /= 1024;
    unit += 1;
  } while (value >= 1023.95 && unit < units.length - 1); // 1048575 B is 1.0 MiB, not 1024.0 KiB
  return `${value.toFixed(1)} ${units[unit]}`;
}

export function duration(seconds) {
  if (seconds < 120) return `${Math.max(0, Math.round(seconds))} s`;
  if (Math.round(seconds / 60) < 60) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h`;
  const days = Math.round(seconds / 86400);
  return `${days} ${days === 1 ? "day" : "days"}`;
}

const LOGIN_EXAMPLE = "an email address like ann@example.com or a phone number like +7 999 123-45-67";

// A field's words, from the server's reason (SPEC §1: details.fields) and the field's name.
function fieldWords(name, reason) {
  const why = String(reason || "");
  if (/^required$/.test(why)) {
    return {
      id: "Enter your email address or phone number.",
      password: "Enter a password.",
      current_password: "Enter your password.",
      code: "Enter the code.",
    }[name] || "This field is needed.";
  }
  if (name === "id") {
    if (/not a valid phone/.test(why)) return "This is not a phone number we can read: start with + and the country code, e.g. +7 999 123-45-67.";
    return `Enter ${LOGIN_EXAMPLE}.`;
  }
  if (/password$/.test(name)) {
    if (/wrong/.test(why)) return "This is not your password.";
    if (/commonly used/.test(why)) return "This password is one of the most common, so it is easy to guess. Choose another.";
    const least = why.match(/at least (\d+)/);
    if (least) return `Use at least ${least[1]} characters.`;
    const most = why.match(/at most (\d+)/);
    if (most) return `Use at most ${most[1]} characters.`;
  }
  if (name === "expires_in") return "The server does not keep links that long; choose a shorter time.";
  return sentence(why);
}

function sentence(text) {
  const trimmed = String(text).trim();
  if (!trimmed) return "";
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?…]$/.test(capital) ? capital : `${capital}.`;
}

// `context.file` (or the error's `file`): the File an upload was refused for, named in the words.
// Answers {text, fields}: `fields` maps a request field to its words (for the form that sent it), `text`
// is the whole message (for the message area, and where no form field matches).
export function explain(error, context = {}) {
  if (!(error instanceof ApiError)) {
    return { text: error instanceof Error ? error.message : String(error), fields: {} }; // the page's own words
  }
  const details = error.details || {};
  const refused = context.file ?? error.file;
  const file = refused ? `${refused.name} (${humanSize(refused.size)})` : "The file";
  const fields = {};
  for (const [name, reason] of Object.entries(details.fields || {})) fields[name] = fieldWords(name, reason);
  let text;
  switch (error.code) {
    case "validation_error":
      text = Object.values(fields).join(" ") || sentence(error.message);
      break;
    case "user_exists":
      text = fields.id = "An account with this email or phone already exists. Sign in, or choose “Forgot password?”.";
      break;
    case "invalid_credentials":
      text = fields.password = "The email, phone or password is not right.";
      fields.current_password = "This is not your password."; // a form that asks for it again
      break;
    case "invalid_code":
      text = fields.code = "This code is wrong, has expired or was already used.";
      break;
    case "rate_limited":
      text = /unfinished resumable uploads/.test(error.message)
        ? "You already have as many unfinished uploads as one account may keep: finish or cancel one first " +
          "(choose its file again to finish it)."
        : `Too many attempts. Try again in ${duration(Number(error.retryAfter) || 60)}.`;
      break;
    case "quota_exceeded":
      if (details.max_files) {
        text = `${file} was not stored: you already keep ${details.max_files} files, the most allowed.`;
      } else if (details.quota !== undefined) {
        const used = Number(details.bytes) + Number(details.reserved || 0);
        const left = Math.max(0, details.quota - used);
        const held = details.reserved ? `, ${humanSize(details.reserved)} of it by unfinished uploads` : "";
        text = `${file} does not fit in your storage: ${humanSize(used)} of ${humanSize(details.quota)} is in use${held}, ` +
          `${humanSize(left)} is free.`;
      } else {
        text = `${file} does not fit in your storage.`;
      }
      break;
    case "file_too_large":
      text = details.limit
        ? `${file} is larger than the ${humanSize(details.limit)} this server accepts for one file.`
        : `${file} is larger than this server accepts for one file.`;
      break;
    case "insufficient_storage":
      text = "The server has run out of space, so nothing was stored. Try again later.";
      break;
    case "service_unavailable":
      text = "The service is unavailable for a moment. Try again shortly.";
      break;
    case "account_disabled":
      text = "This account has been disabled by an administrator.";
      break;
    case "unsupported_media_type":
      text = `${file} is of a type this cannot be done with.`;
      break;
    default:
      text = Object.values(fields).join(" ") || sentence(error.message);
  }
  return { text, fields };
}
