// Custom Vision "domains" (General, General (compact), per project type). They never change while the
// server runs, so one request per page load is enough.
import { get, tr } from "./api.js";

let domains = null;

export async function listDomains() {
  if (!domains) {
    domains = get(tr`domains`).catch((err) => {
      domains = null;
      throw err;
    });
  }
  return domains;
}

export function domainsById(list) {
  return new Map(list.map((d) => [d.id, d]));
}

/** True when the project's domain is an object-detection domain. */
export async function isDetectionProject(project) {
  const byId = domainsById(await listDomains());
  const domain = byId.get(project.settings && project.settings.domainId);
  return Boolean(domain && domain.type === "ObjectDetection");
}
