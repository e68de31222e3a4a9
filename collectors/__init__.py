"""Selenium collectors for Naver Webtoon, Kakao Webtoon and MyAnimeList (not built yet)."""
