"""Selenium collectors for Naver Webtoon, Kakao Webtoon and MyAnimeList into the catalog."""
