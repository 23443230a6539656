// Small page behaviours declared with data attributes, so that no template needs an inline handler
// (the Content-Security-Policy allows scripts from this origin only).
//   data-submit-on-change   a control that submits its form when it changes
//   data-remove-row         a button that removes its table row
//   data-reset-on-success   an htmx form that is emptied once its request succeeded
//   data-confirm            a form that asks before it submits
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var control = event.target.closest("[data-submit-on-change]");
    if (control && control.form) control.form.submit();
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-remove-row]");
    if (button) {
      var row = button.closest("tr");
      if (row) row.remove();
    }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.target.closest && event.target.closest("form[data-reset-on-success]");
    if (form && event.detail && event.detail.successful) form.reset();
  });
})();
