// Copy buttons: <button data-copy-target="#element-id"> copies that element's text.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy-target]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copyTarget);
  if (!source) return;
  const text = source.textContent.trim();
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    // No clipboard access (e.g. plain http): select the text so that Ctrl+C works.
    window.getSelection().selectAllChildren(source);
    button.textContent = "Press Ctrl+C";
  }
});
