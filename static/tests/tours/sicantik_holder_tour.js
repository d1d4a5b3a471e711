/** @odoo-module **/

import { registry } from "@web/core/registry";

/**
 * A SICANTIK User (not an administrator) working in Indonesian, run by
 * tests/test_sicantik_tours.py: dashboard -> Numbers to fix -> a holder ->
 * their permit -> log a note.
 *
 * On every screen the visible text is compared with the addon's English
 * msgids that Indonesian translates differently (the test gives them in
 * window.sicantikEnglishTerms, as patterns: a placeholder matches any
 * text). A text node that reads as one of them fails the tour.
 */

const NOTE = "Pemegang izin sudah dihubungi lewat telepon.";

function englishPatterns() {
    const terms = window.sicantikEnglishTerms;
    if (!terms || !terms.length) {
        throw new Error("the test gave no English terms to look for");
    }
    return terms.map((term) => new RegExp(term, "u"));
}

/** Visible text nodes of the page, whitespace collapsed. */
function visibleTexts() {
    const texts = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const text = node.textContent.replace(/\s+/g, " ").trim();
        const parent = node.parentElement;
        if (!text || !parent || parent.closest("script, style, template, .o_notification_manager")) {
            continue;
        }
        if (parent.getClientRects().length === 0) {
            continue; // not displayed
        }
        texts.push(text);
    }
    return texts;
}

function noEnglish(screen, trigger) {
    return {
        content: `No English string of the addon on the ${screen}`,
        trigger,
        run() {
            const patterns = englishPatterns();
            const found = visibleTexts().filter((text) => patterns.some((re) => re.test(text)));
            if (found.length) {
                throw new Error(`English on the ${screen}: ${JSON.stringify([...new Set(found)])}`);
            }
        },
    };
}

registry.category("web_tour.tours").add("sicantik_holder_tour", {
    url: "/odoo/action-sicantik_connector.sicantik_dashboard_action",
    steps: () => [
        {
            content: "The dashboard is drawn, with its holders figure",
            trigger:
                ".o_sicantik_dashboard:has(.o_sicantik_types .o_sicantik_type) .o_sicantik_figure[data-figure=numbers_to_fix]",
        },
        noEnglish("dashboard", ".o_sicantik_dashboard .o_sicantik_states"),
        {
            content: "Open the holders whose number needs fixing",
            trigger: ".o_sicantik_figure[data-figure=numbers_to_fix]",
            run: "click",
        },
        {
            content: "The Numbers to fix list shows the holder",
            trigger: '.o_list_view .o_data_row .o_data_cell:contains("CV Sinar Karo")',
        },
        noEnglish("Numbers to fix list", ".o_list_view .o_data_row"),
        {
            content: "Open the holder",
            trigger: '.o_list_view .o_data_row .o_data_cell:contains("CV Sinar Karo")',
            run: "click",
        },
        {
            content: "The holder's form with their permits",
            trigger: ".o_form_view button[name=action_view_sicantik_permits]",
        },
        noEnglish("holder's form", ".o_form_view .o_notebook"),
        {
            content: "Open the holder's WhatsApp tab",
            trigger: ".o_form_view .o_notebook a[name=sicantik_whatsapp]",
            run: "click",
        },
        {
            content: "The WhatsApp number and the SICANTIK phone side by side",
            trigger: ".o_form_view .o_field_widget[name=sicantik_phone]",
        },
        noEnglish("holder's WhatsApp tab", ".o_form_view .o_field_widget[name=whatsapp_number_state]"),
        {
            content: "Open the holder's permits",
            trigger: ".o_form_view button[name=action_view_sicantik_permits]",
            run: "click",
        },
        {
            content: "The holder's two permits are listed",
            trigger: ".o_list_view:has(.o_data_row:nth-child(2)) .o_data_row .o_data_cell[name=no_surat]",
        },
        noEnglish("holder's permit list", ".o_list_view .o_data_row"),
        {
            content: "Open their latest permit",
            trigger: ".o_list_view .o_data_row:first-child .o_data_cell[name=no_surat]",
            run: "click",
        },
        {
            content: "The permit form shows its holder and its status badge",
            trigger: ".o_form_view:has(.o_field_widget[name=partner_id]) .o_field_widget[name=status] .badge",
        },
        noEnglish("permit form", ".o_form_view .o-mail-Chatter"),
        {
            content: "Log a note",
            trigger: ".o-mail-Chatter .o-mail-Chatter-logNote",
            run: "click",
        },
        {
            content: "Write the note",
            trigger: ".o-mail-Chatter .o-mail-Composer-input",
            run: `edit ${NOTE}`,
        },
        {
            content: "Post it",
            trigger: ".o-mail-Chatter .o-mail-Composer-send:enabled",
            run: "click",
        },
        {
            content: "The note is on the permit",
            trigger: `.o-mail-Chatter .o-mail-Message:contains("${NOTE}")`,
        },
        noEnglish("permit form with the note", ".o-mail-Chatter .o-mail-Message"),
    ],
});
