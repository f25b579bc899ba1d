from __future__ import annotations

from django import forms

MAX_LENGTH = 500


class AnnouncementForm(forms.Form):
    text = forms.CharField(
        label="Message",
        max_length=MAX_LENGTH,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "Write an announcement for everyone on the page"}
        ),
    )
