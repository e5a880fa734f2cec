// What the signed-in key may do, asked of the server once per sign-in (kept in memory only).
import { ApiError, get, TRAINING, veil } from "./api.js";

// The role learnt from a 403 is kept for this tab like the key (it is not a secret), so a reload keeps it.
const ROLE_SLOT = "veil.learntRole";

let cached = null;

// What each role may do, mirroring veil.security.auth.ROLE_PERMISSIONS. The server enforces it; the portal
// only uses it to hide buttons that would answer 403.
const TRAINER = [
  "projects.read", "projects.create", "projects.write", "tags.read", "tags.write", "images.read", "images.write",
  "images.bytes", "regions.write", "iterations.read", "train", "publish", "export", "models.read",
  "predictions.read", "predictions.write",
];
const ROLE_PERMISSIONS = {
  trainer: TRAINER,
  labeler: ["projects.read", "tags.read", "tags.write", "images.read", "images.write", "images.bytes", "regions.write"],
  auditor: ["projects.read", "tags.read", "images.read", "iterations.read", "predictions.read", "audit.read"],
  predictor: ["predict"],
};

/**
 * Check a key against the server. Resolves with {label, role, isAdmin, canAudit} or throws ApiError
 * (401 for a wrong key). The projects list is the cheapest call every non-predictor role may make.
 */
function describe(role, name) {
  const known = role !== "unknown";
  return {
    role,
    label: known ? (name ? `${name} · ${role}` : `${role} key`) : "signed in",
    isAdmin: role === "admin" || !known,
    canAudit: role === "admin" || role === "auditor" || !known,
    /** True when the role may do this (unknown role: show everything and let the server decide). */
    can(permission) {
      if (role === "admin" || !(role in ROLE_PERMISSIONS)) return true;
      return ROLE_PERMISSIONS[role].includes(permission);
    },
  };
}

/**
 * Without a whoami route the role starts unknown; the first 403 names it ("role 'auditor' may not …"),
 * and from then on the portal hides what that role cannot do. Resolves true when the role was learnt.
 */
export async function learnRoleFrom(error) {
  const match = /role '([a-z]+)'/.exec(error.message || "");
  return Boolean(match) && learnRole(match[1], null);
}

/** Record the role (and key name) once something proves it, e.g. the keys list answering means admin. */
export async function learnRole(role, name) {
  if (!(role in ROLE_PERMISSIONS || role === "admin") || !cached) return false;
  const me = await cached.catch(() => null);
  if (!me || me.role !== "unknown") return false;
  Object.assign(me, describe(role, name));
  sessionStorage.setItem(ROLE_SLOT, role);
  window.dispatchEvent(new Event("veil:identity")); // the top bar shows the role
  return true;
}

async function probe(key) {
  await get(`${TRAINING}/projects`, { key });
  const me = await get(veil`whoami`, { key }).catch((err) => {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return null;
    throw err;
  });
  const learnt = key ? null : sessionStorage.getItem(ROLE_SLOT);
  return describe((me && me.role) || learnt || "unknown", me && me.name);
}

export async function whoAmI(key) {
  if (key) {
    cached = probe(key);
  } else if (!cached) {
    cached = probe(undefined);
  }
  try {
    return await cached;
  } catch (err) {
    cached = null;
    throw err;
  }
}

whoAmI.forget = () => {
  cached = null;
  sessionStorage.removeItem(ROLE_SLOT);
};
