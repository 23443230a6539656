// Catalog filters: leave empty fields out of htmx requests, so that pushed URLs stay short
// (?q=ratings rather than ?q=ratings&environment=&team=...).
document.addEventListener("htmx:configRequest", (event) => {
  if (!event.detail.elt.closest("#catalog-filters")) return;
  const data = event.detail.formData;
  for (const [name, value] of [...data.entries()]) {
    if (value === "") data.delete(name);
  }
});
